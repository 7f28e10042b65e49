"""Fixtures for system tests: they talk to the running local stack's real services.

Connection details come from the environment that scripts/test.sh exports
(DEMIURGE_TEST_PG_PORT, DEMIURGE_TEST_PG_PASSWORD, ...).
"""

import os
import uuid

import psycopg
import pytest
from psycopg import sql

from ansible_collections.demiurge.gateway.plugins.module_utils._pool_schema import ensure_schema

import invariants


def pytest_configure(config):
    config.addinivalue_line("markers", "kill_matrix: kills a playbook's process tree at every task, then reconciles")
    config.addinivalue_line("markers", "real_hosts: the platform on lab hosts reached over SSH, with a stack of its own")
    config.addinivalue_line("markers", "event_driven: the autoscaler's rulebook run by ansible-rulebook")
    # Under CI a missing environment is a failure: a system suite that skips itself proves nothing.
    if os.environ.get("CI") and not os.environ.get("DEMIURGE_TEST_ENV"):
        raise pytest.UsageError("DEMIURGE_TEST_ENV is not set under CI: run the system tests through scripts/test.sh")


def pytest_collection_modifyitems(config, items):
    if not os.environ.get("DEMIURGE_TEST_ENV"):
        skip = pytest.mark.skip(reason="DEMIURGE_TEST_ENV is not set: run the suite through scripts/test.sh")
        for item in items:
            item.add_marker(skip)


def _env(name, default=None):
    return os.environ.get("DEMIURGE_TEST_" + name, default)


@pytest.fixture
def invariants_hold():
    """After a life-cycle test: the promises of the life cycle hold on the real services."""
    yield
    violations = invariants.check(settled=True)
    assert not violations, "life-cycle invariants broken:\n" + "\n".join(violations)


@pytest.fixture(scope="session")
def pg_params():
    return {
        "login_host": _env("PG_HOST", "127.0.0.1"),
        "login_port": int(_env("PG_PORT")),
        "login_user": _env("PG_USER", "demiurge"),
        "login_password": _env("PG_PASSWORD"),
        "login_db": "demiurge",
        "connect_timeout": 10,
        "create_database": True,
        "maintenance_db": "postgres",
    }


def connect(params, **kwargs):
    return psycopg.connect(host=params["login_host"], port=params["login_port"], user=params["login_user"],
                           password=params["login_password"], dbname=params["login_db"], **kwargs)


@pytest.fixture
def scratch_db(pg_params):
    """A new database with the pool schema applied, dropped afterwards."""
    params = dict(pg_params, login_db="pooltest_" + uuid.uuid4().hex[:12])
    ensure_schema(params, check_mode=False)
    yield params
    with connect(dict(params, login_db="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(params["login_db"])))


def add_ready_gateways(params, count, prefix="gw"):
    with connect(params) as conn:
        for index in range(count):
            gateway_id = conn.execute(
                "CALL proc_gateway_new(%s, %s, %s)",
                ("%s-%03d" % (prefix, index), "http://127.0.0.1:%d" % (20000 + index), "127.0.0.1:%d" % (20000 + index)),
            ).fetchone()[0]
            conn.execute("CALL proc_gateways_set_ready(%s)", (gateway_id,))
