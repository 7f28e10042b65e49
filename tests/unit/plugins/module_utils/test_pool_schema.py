"""Migrations against a scripted connection: order, checksums, refusal of foreign histories."""

import pytest

from ansible_collections.demiurge.gateway.plugins.module_utils import _pool_schema
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import SchemaError
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_migrations import MIGRATIONS, checksum

PARAMS = {"login_host": "db", "login_port": 5432, "login_user": "demiurge", "login_password": None, "login_db": "demiurge",
          "connect_timeout": 1, "create_database": False, "maintenance_db": "postgres"}


class Rows:
    def __init__(self, rows):
        self.rows = rows

    def fetchone(self):
        return self.rows[0]

    def fetchall(self):
        return self.rows


class Connection:
    def __init__(self, applied):
        self.applied, self.statements = applied, []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def transaction(self):
        return self

    def execute(self, sql, params=()):
        self.statements.append((sql, params))
        if sql.startswith("SELECT to_regclass"):
            return Rows([("gateway_schema_migrations" if self.applied is not None else None,)])
        if sql.startswith("SELECT version, name, checksum"):
            return Rows(self.applied)
        return Rows([])

    def sql_run(self):
        return [sql for sql, dummy in self.statements]


@pytest.fixture
def database(monkeypatch):
    def use(applied):
        conn = Connection(applied)
        monkeypatch.setattr(_pool_schema, "connect", lambda params, **kwargs: conn)
        return conn
    return use


def test_a_new_database_gets_every_migration_in_order_under_the_lock(database):
    conn = database(None)
    result = _pool_schema.ensure_schema(PARAMS, False)
    assert result["changed"] and result["version"] == MIGRATIONS[-1].version
    run = conn.sql_run()
    assert run[0].startswith("SELECT pg_advisory_lock") and run[-1].startswith("SELECT pg_advisory_unlock")
    assert [sql for sql in run if sql in [m.sql for m in MIGRATIONS]] == [m.sql for m in MIGRATIONS]
    recorded = [params[0] for sql, params in conn.statements if sql.startswith("INSERT INTO gateway_schema_migrations")]
    assert recorded == [m.version for m in MIGRATIONS]


def test_only_pending_migrations_run(database):
    conn = database([(1, MIGRATIONS[0].name, checksum(MIGRATIONS[0]))])
    result = _pool_schema.ensure_schema(PARAMS, False)
    assert [entry["version"] for entry in result["applied"]] == [m.version for m in MIGRATIONS[1:]]
    assert MIGRATIONS[0].sql not in conn.sql_run()


def test_check_mode_applies_nothing(database):
    conn = database([])
    result = _pool_schema.ensure_schema(PARAMS, True)
    assert result["changed"] and not any(sql in conn.sql_run() for sql in [m.sql for m in MIGRATIONS])


def test_an_edited_applied_migration_is_refused(database):
    conn = database([(1, MIGRATIONS[0].name, "0" * 64)])
    with pytest.raises(SchemaError, match="Migration 1 .* differs from the collection's copy"):
        _pool_schema.ensure_schema(PARAMS, False)
    assert conn.sql_run()[-1].startswith("SELECT pg_advisory_unlock"), "the lock is given back"


def test_a_newer_schema_is_refused(database):
    database([(99, "from the future", "f" * 64)])
    with pytest.raises(SchemaError, match="versions \\[99\\] that this collection does not know"):
        _pool_schema.ensure_schema(PARAMS, False)
