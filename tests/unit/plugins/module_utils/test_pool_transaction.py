import psycopg
import pytest

from ansible_collections.demiurge.gateway.plugins.module_utils import _pool_ops
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import DatabaseError
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_ops import Transaction

PARAMS = {"login_host": "db", "login_port": 5432, "login_user": "demiurge", "login_db": "demiurge"}


class ScriptedConnection:
    """Records what a Transaction does to its connection; commit_error makes COMMIT fail."""

    def __init__(self, commit_error=None, broken=False):
        self.commit_error, self.broken = commit_error, broken
        self.calls = []

    def commit(self):
        self.calls.append("commit")
        if self.commit_error:
            raise self.commit_error

    def rollback(self):
        self.calls.append("rollback")

    def close(self):
        self.calls.append("close")


@pytest.fixture
def opened(monkeypatch):
    conn = ScriptedConnection()
    monkeypatch.setattr(_pool_ops, "connect", lambda params: conn)
    return conn


def test_own_connection_is_committed_and_closed(opened):
    with Transaction(PARAMS, False):
        pass
    assert opened.calls == ["commit", "close"]


def test_check_mode_rolls_back(opened):
    with Transaction(PARAMS, True):
        pass
    assert opened.calls == ["rollback", "close"]


def test_given_connection_stays_open():
    conn = ScriptedConnection()
    with Transaction(PARAMS, False, conn) as used:
        assert used is conn
    assert conn.calls == ["commit"]


def test_failed_commit_is_reported_as_a_database_refusal():
    conn = ScriptedConnection(commit_error=psycopg.errors.SerializationFailure("could not serialize access"))
    with pytest.raises(DatabaseError, match="refused the change, nothing was written: could not serialize access"):
        with Transaction(PARAMS, False, conn):
            pass
    assert conn.calls == ["commit"]


def test_broken_connection_is_not_rolled_back_and_the_error_is_mapped():
    conn = ScriptedConnection(broken=True)
    with pytest.raises(DatabaseError, match="server closed the connection"):
        with Transaction(PARAMS, False, conn):
            raise psycopg.OperationalError("server closed the connection unexpectedly")
    assert conn.calls == []


def test_a_commit_lost_with_the_connection_is_an_unknown_outcome():
    conn = ScriptedConnection(commit_error=psycopg.OperationalError("server closed the connection unexpectedly"))
    conn.broken = True
    with pytest.raises(DatabaseError, match="whether the change was written is unknown") as raised:
        with Transaction(PARAMS, False, conn):
            pass
    assert raised.value.outcome == "unknown"
