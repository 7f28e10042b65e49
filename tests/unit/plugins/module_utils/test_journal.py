import psycopg
import pytest

from ansible_collections.demiurge.gateway.plugins.module_utils._errors import DatabaseError, LeaseHeldError
from ansible_collections.demiurge.gateway.plugins.plugin_utils import _journal

JOURNAL = {"login_host": "db", "login_port": 5432, "login_user": "demiurge", "login_db": "demiurge",
           "allocation_id": "a1", "step": "route", "lease_seconds": 60, "lease_holder": "run-1"}


class Rows:
    def __init__(self, row):
        self.row = row

    def fetchone(self):
        return self.row


class JournalConnection:
    """A connection that records the journal states written through it. With `lost_after`, that
    many statements succeed, then the connection breaks as if the server had gone away; with
    `refusal`, every statement fails with it on a live connection."""

    def __init__(self, lost_after=None, refusal=None, lease_lost=False):
        self.lost_after, self.refusal, self.broken, self.closed = lost_after, refusal, False, False
        self.lease_lost = lease_lost
        self.statements, self.states, self.hosts, self.details = 0, [], [], []

    def execute(self, sql, params):
        if self.refusal:
            raise self.refusal
        if self.lost_after is not None and self.statements >= self.lost_after:
            self.broken = True
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        self.statements += 1
        if sql.startswith("WITH before"):
            self.hosts.append(params["h"])
            self.states.append(params["state"])
            self.details.append(params["d"].obj)
            return Rows(None)
        return Rows(None if self.lease_lost else ("org-1", "gw-1", "allocating"))

    def commit(self):
        pass

    def rollback(self):
        pass

    def close(self):
        self.closed = True


def run_step(monkeypatch, work, *opened):
    """Run work() as a journaled step on host edge-1; each connect() hands out the next of
    `opened`, or raises it. Returns the work's result."""
    queue = list(opened)

    def connect(params):
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    monkeypatch.setattr(_journal, "connect", connect)
    with _journal.JournaledStep(JOURNAL, "edge-1") as step:
        result = work()
        step.finish(result)
    return result


def succeed():
    return {"changed": True}


def refuse():
    return {"failed": True, "msg": "nginx -t refused the change", "outcome": "not_applied"}


def time_out():
    return {"failed": True, "msg": "PowerDNS API did not answer PATCH: timed out"}


def crash():
    raise RuntimeError("worker died")


def test_records_of_a_step_share_one_connection_and_name_the_host(monkeypatch):
    conn = JournalConnection()
    assert run_step(monkeypatch, succeed, conn) == {"changed": True}
    assert conn.states == ["started", "done"] and conn.closed
    assert conn.hosts == ["edge-1", "edge-1"]


def test_a_connection_lost_during_the_step_is_replaced_for_the_next_record(monkeypatch):
    # Three statements a record: the lease, the record, its event.
    lost, fresh = JournalConnection(lost_after=3), JournalConnection()
    assert run_step(monkeypatch, succeed, lost, fresh) == {"changed": True}
    assert lost.states == ["started"] and fresh.states == ["done"]
    assert lost.closed and fresh.closed


def test_a_step_known_to_have_applied_nothing_is_failed(monkeypatch):
    conn = JournalConnection()
    assert run_step(monkeypatch, refuse, conn)["failed"]
    assert conn.states == ["started", "failed"] and conn.closed
    assert conn.details[-1]["error"] == "nginx -t refused the change"


def test_a_step_whose_outcome_is_unknown_is_not_called_failed(monkeypatch):
    """A timed-out request may have been applied: the record says unknown, never failed."""
    conn = JournalConnection()
    run_step(monkeypatch, time_out, conn)
    assert conn.states == ["started", "unknown"]


def test_an_exception_in_the_work_is_recorded_unknown_and_raised(monkeypatch):
    conn = JournalConnection()
    with pytest.raises(RuntimeError, match="worker died"):
        run_step(monkeypatch, crash, conn)
    assert conn.states == ["started", "unknown"] and conn.closed


def test_a_journal_refusal_on_a_live_connection_is_not_retried(monkeypatch):
    refusing = JournalConnection(refusal=psycopg.errors.CheckViolation("bad state"))
    with pytest.raises(DatabaseError, match="bad state"):
        run_step(monkeypatch, succeed, refusing)
    assert refusing.closed


def test_a_run_that_lost_its_lease_does_not_start_the_step(monkeypatch):
    taken = JournalConnection(lease_lost=True)
    ran = []
    with pytest.raises(LeaseHeldError, match="not live under this run's lease"):
        run_step(monkeypatch, lambda: ran.append(1) or {}, taken)
    assert ran == [] and taken.closed


@pytest.mark.parametrize("result, state", [
    ({"changed": False}, "done"),
    ({"failed": True, "outcome": "not_applied"}, "failed"),
    ({"failed": True}, "unknown"),
    ({"unreachable": True}, "unknown"),
])
def test_outcome(result, state):
    assert _journal.outcome(result) == state
