from ansible_collections.demiurge.gateway.plugins.module_utils._pool_migrations import MIGRATIONS, checksum


def test_versions_are_consecutive_from_one():
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))


def test_routines_never_control_transactions():
    """The platform's allocation procedure ran COMMIT inside and broke callers' transactions."""
    for migration in MIGRATIONS:
        words = migration.sql.upper().split()
        assert "COMMIT;" not in words and "ROLLBACK;" not in words


def test_checksums_are_stable_hex():
    assert all(len(checksum(m)) == 64 for m in MIGRATIONS)
