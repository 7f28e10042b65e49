import psycopg
import pytest

from ansible_collections.demiurge.gateway.plugins.module_utils import _journal
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import DatabaseError, InvalidInputError
from ansible_collections.demiurge.gateway.plugins.module_utils._module import Call

JOURNAL = {"login_host": "db", "login_port": 5432, "login_user": "demiurge", "login_db": "demiurge",
           "allocation_id": "a1", "step": "route", "lease_seconds": 60}


class Rows:
    def __init__(self, row):
        self.row = row

    def fetchone(self):
        return self.row


class JournalConnection:
    """A connection that records the journal states written through it. With `lost_after`, that
    many statements succeed, then the connection breaks as if the server had gone away; with
    `refusal`, every statement fails with it on a live connection."""

    def __init__(self, lost_after=None, refusal=None):
        self.lost_after, self.refusal, self.broken, self.closed = lost_after, refusal, False, False
        self.statements, self.states = 0, []

    def execute(self, sql, params):
        if self.refusal:
            raise self.refusal
        if self.lost_after is not None and self.statements >= self.lost_after:
            self.broken = True
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        self.statements += 1
        if sql.startswith("INSERT INTO allocation_steps"):
            self.states.append(params[2])
        return Rows(("a1",))

    def commit(self):
        pass

    def rollback(self):
        pass

    def close(self):
        self.closed = True


def run_step(monkeypatch, body, *opened):
    """Run body as a journaled step; each connect() hands out the next of `opened`, or raises it."""
    queue = list(opened)

    def connect(params):
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    monkeypatch.setattr(_journal, "connect", connect)
    return _journal.journaled(body)(Call({"journal": JOURNAL}, False, False, None))


def succeed(call):
    return {"changed": True}


def refuse(call):
    raise InvalidInputError("nginx -t refused the change")


def test_records_of_a_step_share_one_connection(monkeypatch):
    conn = JournalConnection()
    assert run_step(monkeypatch, succeed, conn) == {"changed": True}
    assert conn.states == ["started", "done"] and conn.closed


def test_a_connection_lost_during_the_step_is_replaced_for_the_next_record(monkeypatch):
    lost, fresh = JournalConnection(lost_after=2), JournalConnection()
    assert run_step(monkeypatch, succeed, lost, fresh) == {"changed": True}
    assert lost.states == ["started"] and fresh.states == ["done"]
    assert lost.closed and fresh.closed


def test_a_failed_step_is_recorded_and_its_error_raised(monkeypatch):
    conn = JournalConnection()
    with pytest.raises(InvalidInputError, match="nginx -t refused"):
        run_step(monkeypatch, refuse, conn)
    assert conn.states == ["started", "failed"] and conn.closed


def test_the_step_error_wins_when_the_journal_is_gone_too(monkeypatch):
    lost = JournalConnection(lost_after=2)
    with pytest.raises(InvalidInputError, match="nginx -t refused"):
        run_step(monkeypatch, refuse, lost, DatabaseError("Could not connect to PostgreSQL"))
    assert lost.states == ["started"] and lost.closed


def test_a_journal_refusal_on_a_live_connection_is_not_retried(monkeypatch):
    refusing = JournalConnection(refusal=psycopg.errors.CheckViolation("bad state"))
    with pytest.raises(DatabaseError, match="bad state"):
        run_step(monkeypatch, succeed, refusing)
    assert refusing.closed
