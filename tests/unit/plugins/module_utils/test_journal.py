import time

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

    def __init__(self, lost_after=None, refusal=None, lease_lost=False, leases_lost=()):
        self.lost_after, self.refusal, self.broken, self.closed = lost_after, refusal, False, False
        self.lease_lost, self.leases_lost = lease_lost, set(leases_lost)
        self.statements, self.states, self.hosts, self.details, self.records = 0, [], [], [], []
        self.renewals = []

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
            self.records.append((params["a"], params["state"]))
            return Rows(None)
        if "greatest(lease_expires_at" in sql:
            self.renewals.append((params[0], tuple(params[1]), params[2], len(self.states)))
            return Rows(None)
        lost = self.lease_lost or (sql.startswith("UPDATE organizations_gateways") and params[1] in self.leases_lost)
        return Rows(None if lost else ("org-1", "gw-1", "allocating"))

    def commit(self):
        pass

    def rollback(self):
        pass

    def close(self):
        self.closed = True


def run_step(monkeypatch, work, *opened, journal=None):
    """Run work() as a journaled step on host edge-1; each connect() hands out the next of
    `opened`, or raises it. Returns the work's result."""
    queue = list(opened)

    def connect(params):
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    monkeypatch.setattr(_journal, "connect", connect)
    with _journal.JournaledStep(journal or JOURNAL, "edge-1") as step:
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


def test_a_step_that_outlasts_its_lease_keeps_renewing_it(monkeypatch):
    """A slow step (a loaded machine) must not lose its allocation to reconcile: the lease is
    renewed every third of a lease while the work runs, and never after."""
    conn = JournalConnection()

    def slow():
        time.sleep(1.1)
        return {"changed": True}

    assert run_step(monkeypatch, slow, conn, journal=dict(JOURNAL, lease_seconds=0.6)) == {"changed": True}
    assert len(conn.renewals) >= 3, conn.renewals
    assert all(renewal[:3] == (0.6, ("a1",), "run-1") for renewal in conn.renewals)
    assert all(renewal[3] == 1 for renewal in conn.renewals), "between 'started' and the outcome only"
    assert conn.states == ["started", "done"]


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


BATCH = dict(JOURNAL, allocation_id=None, allocations={"o-1": "a1", "o-2": "a2", "o-3": "a3"})


def run_batch(monkeypatch, work, conn):
    """Run work(organizations the journal let through) as a journaled batch step on edge-1."""
    monkeypatch.setattr(_journal, "connect", lambda params: conn)
    with _journal.JournaledBatch(BATCH, "edge-1") as batch:
        result = work(sorted(batch.allocations))
        batch.finish(result)
    return batch, result


def test_each_organization_of_a_batch_gets_its_own_records_and_outcome(monkeypatch):
    conn = JournalConnection()
    batch, dummy = run_batch(monkeypatch, lambda organizations: {
        "failed": True, "msg": "2 of 3 ...", "failed_organizations": {"o-2": "owned by a9", "o-3": "timed out"},
        "unknown_organizations": ["o-3"]}, conn)
    assert conn.records == [("a1", "started"), ("a2", "started"), ("a3", "started"),
                            ("a1", "done"), ("a2", "failed"), ("a3", "unknown")]
    assert conn.details[4] == {"error": "owned by a9"} and set(conn.hosts) == {"edge-1"} and conn.closed


def test_an_organization_whose_lease_is_gone_is_left_out_of_the_batch(monkeypatch):
    conn = JournalConnection(leases_lost=["a2"])
    batch, result = run_batch(monkeypatch, lambda organizations: {"changed": True, "given": organizations}, conn)
    assert result["given"] == ["o-1", "o-3"] and list(batch.refused) == ["o-2"]
    assert "not live under this run's lease" in batch.refused["o-2"]
    assert conn.records == [("a1", "started"), ("a3", "started"), ("a1", "done"), ("a3", "done")]


def test_a_batch_that_failed_as_a_whole_gives_each_organization_its_outcome(monkeypatch):
    conn = JournalConnection()
    run_batch(monkeypatch, lambda organizations: {"failed": True, "msg": "nginx is not running", "outcome": "not_applied"}, conn)
    assert conn.records[3:] == [("a1", "failed"), ("a2", "failed"), ("a3", "failed")]
    conn = JournalConnection()
    with pytest.raises(RuntimeError):
        run_batch(monkeypatch, lambda organizations: crash(), conn)
    assert conn.records[3:] == [("a1", "unknown"), ("a2", "unknown"), ("a3", "unknown")] and conn.closed
