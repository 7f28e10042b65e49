"""The pool schema under real concurrency: many connections claiming at once."""

import json
import threading
import time
import uuid
from collections import Counter

import psycopg
import pytest
from psycopg import sql

from ansible_collections.demiurge.gateway.plugins.module_utils._pool_migrations import MIGRATIONS, POOL_EXHAUSTED_SQLSTATE, checksum
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_schema import ensure_schema

from conftest import add_ready_gateways, connect

ROUNDS = 3


def claim_all(params, org_ids, before_commit=None):
    """Claim for each org id from its own connection, all released at once; return outcomes in order."""
    connections = [connect(params) for dummy in org_ids]
    barrier = threading.Barrier(len(org_ids))
    outcomes = [None] * len(org_ids)

    def claim(index):
        conn = connections[index]
        barrier.wait()
        try:
            row = conn.execute("CALL proc_organizations_start_gateway(%s)", (org_ids[index],)).fetchone()
            if before_commit:
                before_commit(index)
            conn.commit()
            outcomes[index] = ("ok", row[1])
        except psycopg.Error as exc:
            conn.rollback()
            outcomes[index] = ("error", exc.sqlstate)

    threads = [threading.Thread(target=claim, args=(index,)) for index in range(len(org_ids))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for conn in connections:
        conn.close()
    return outcomes


def live_allocations(params):
    with connect(params) as conn:
        return conn.execute(
            "SELECT organization_id, gateway_id FROM organizations_gateways WHERE stopped_at IS NULL"
        ).fetchall()


def assert_consistent(params):
    rows = live_allocations(params)
    assert len({org for org, dummy in rows}) == len(rows), "an organization holds two gateways"
    assert len({gw for dummy, gw in rows}) == len(rows), "a gateway is held twice"
    with connect(params) as conn:
        allocated = conn.execute("SELECT count(*) FROM gateways WHERE status = 'allocated'").fetchone()[0]
    assert allocated == len(rows)
    return rows


@pytest.mark.parametrize("round_no", range(ROUNDS))
def test_fifty_claims_over_fifty_gateways_all_succeed(scratch_db, round_no):
    add_ready_gateways(scratch_db, 50)
    outcomes = claim_all(scratch_db, [uuid.uuid4() for dummy in range(50)])
    assert [kind for kind, dummy in outcomes] == ["ok"] * 50
    assert len({gateway for dummy, gateway in outcomes}) == 50
    assert len(assert_consistent(scratch_db)) == 50


@pytest.mark.parametrize("round_no", range(ROUNDS))
def test_sixty_claims_over_fifty_gateways_give_ten_clean_exhausted(scratch_db, round_no):
    add_ready_gateways(scratch_db, 50)
    outcomes = claim_all(scratch_db, [uuid.uuid4() for dummy in range(60)])
    counts = Counter(outcomes[i][0] if outcomes[i][0] == "ok" else outcomes[i][1] for i in range(60))
    assert counts == {"ok": 50, POOL_EXHAUSTED_SQLSTATE: 10}
    assert len(assert_consistent(scratch_db)) == 50


@pytest.mark.parametrize("round_no", range(ROUNDS))
def test_one_org_racing_itself_gets_one_gateway_and_others_are_not_starved(scratch_db, round_no):
    add_ready_gateways(scratch_db, 20)
    busy_org = uuid.uuid4()
    others = [uuid.uuid4() for dummy in range(5)]
    orgs = [busy_org] * 20 + others
    outcomes = claim_all(scratch_db, orgs)
    assert all(kind == "ok" for kind, dummy in outcomes), outcomes
    assert len({gateway for dummy, gateway in outcomes[:20]}) == 1
    rows = dict(assert_consistent(scratch_db))
    assert set(rows) == {busy_org, *others}


def waiting_on_locks(params, count, timeout=30, seen=None):
    """Poll pg_stat_activity until `count` sessions of the database wait on a lock, or until another
    poller saw them (the event `seen`, which this one sets too)."""
    deadline = time.monotonic() + timeout
    with connect(dict(params, login_db="postgres"), autocommit=True) as conn:
        while not (seen and seen.is_set()) and conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
                (params["login_db"],)).fetchone()[0] < count:
            assert time.monotonic() < deadline, "fewer than %d sessions waited on a lock within %s s" % (count, timeout)
            time.sleep(0.01)
    if seen:
        seen.set()


@pytest.mark.parametrize("round_no", range(ROUNDS))
def test_claims_wait_for_rolled_back_claims_instead_of_answering_exhausted(scratch_db, round_no):
    """Ten claims hold every gateway and then roll back: ten later claims must all succeed."""
    add_ready_gateways(scratch_db, 10)
    holders_locked, all_waiting = threading.Event(), threading.Event()
    held = Counter()
    lock = threading.Lock()

    def hold_then_fail(index):
        with lock:
            held["n"] += 1
            if held["n"] == 10:
                holders_locked.set()
        # Roll back only once all ten later claims wait on the rows these claims hold. The first
        # holder to see them tells the others: once it rolls back, one waiter has its row, and the
        # count the others poll for never comes back.
        waiting_on_locks(scratch_db, 10, seen=all_waiting)
        raise psycopg.errors.RaiseException("simulated failure after claim")

    holder_thread = threading.Thread(
        target=lambda: claim_all(scratch_db, [uuid.uuid4() for dummy in range(10)], before_commit=hold_then_fail))
    holder_thread.start()
    assert holders_locked.wait(30)
    outcomes = claim_all(scratch_db, [uuid.uuid4() for dummy in range(10)])
    holder_thread.join(60)
    assert [kind for kind, dummy in outcomes] == ["ok"] * 10, outcomes
    assert len(assert_consistent(scratch_db)) == 10


def test_claim_inside_a_caller_transaction_leaves_nothing_on_rollback(scratch_db):
    add_ready_gateways(scratch_db, 1)
    with connect(scratch_db) as conn:
        conn.execute("CALL proc_organizations_start_gateway(%s)", (uuid.uuid4(),))
        conn.rollback()
        stats = conn.execute("SELECT ready, allocated, live_allocations FROM func_gateway_stats()").fetchone()
    assert stats == (1, 0, 0)


def test_release_returns_gateway_through_reset_only(scratch_db):
    add_ready_gateways(scratch_db, 1)
    org = uuid.uuid4()
    with connect(scratch_db) as conn:
        allocation_id, gateway_id, created = conn.execute(
            "CALL proc_organizations_start_gateway(%s)", (org,)).fetchone()
        assert created is True
        active = conn.execute("SELECT allocation_id, gateway_id FROM func_organizations_get_active_gateway(%s)",
                              (org,)).fetchone()
        assert active == (allocation_id, gateway_id)
        with pytest.raises(psycopg.errors.ObjectInUse):
            conn.execute("CALL proc_gateways_set_ready(%s)", (gateway_id,))
        conn.rollback()
        conn.execute("CALL proc_organizations_start_gateway(%s)", (org,))
        stopped = conn.execute("CALL proc_organizations_gateways_stop(%s)", (org,)).fetchone()
        assert stopped[1] == gateway_id
        assert conn.execute("CALL proc_organizations_gateways_stop(%s)", (org,)).fetchone() == (None, None)
        assert conn.execute("SELECT status FROM gateways").fetchone()[0] == "resetting"
        conn.execute("CALL proc_gateways_set_ready(%s)", (gateway_id,))
        stats = conn.execute("SELECT ready, allocated, live_allocations FROM func_gateway_stats()").fetchone()
    assert stats == (1, 0, 0)


def test_migration_5_sets_aside_every_ready_gateway_the_life_cycle_cannot_run(pg_params):
    """Gateways registered before pool_gateway checked their metadata: only those it can run stay ready."""
    params = dict(pg_params, login_db="pooltest_" + uuid.uuid4().hex[:12])
    with connect(dict(params, login_db="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(params["login_db"])))
    daemon = {"daemon": {"name": "gw", "pidfile": "/run/gw.pid", "argv": ["/usr/bin/node", "/srv/gateway.js"]}}
    cases = {
        "daemon": ({"data_dir": "/srv/a/data", "tmp_dir": "/srv/a/tmp", "service": daemon}, "ready"),
        "unit": ({"data_dir": "/srv/b/data", "tmp_dir": "/srv/b/tmp", "service": {"systemd_unit": "gw@1.service"}}, "ready"),
        "nothing": ({}, "quarantined"),
        "no-tmp": ({"data_dir": "/srv/c/data", "service": daemon}, "quarantined"),
        "no-service": ({"data_dir": "/srv/d/data", "tmp_dir": "/srv/d/tmp"}, "quarantined"),
        "relative": ({"data_dir": "data", "tmp_dir": "/srv/e/tmp", "service": daemon}, "quarantined"),
        "dot-dot": ({"data_dir": "/srv/../f", "tmp_dir": "/srv/f/tmp", "service": daemon}, "quarantined"),
        "empty-tmp": ({"data_dir": "/srv/g/data", "tmp_dir": "", "service": daemon}, "quarantined"),
        "null-data": ({"data_dir": None, "tmp_dir": "/srv/h/tmp", "service": daemon}, "quarantined"),
        "same-dirs": ({"data_dir": "/srv/i", "tmp_dir": "/srv/i", "service": daemon}, "quarantined"),
        "empty-service": ({"data_dir": "/srv/j/data", "tmp_dir": "/srv/j/tmp", "service": {}}, "quarantined"),
        "daemon-string": ({"data_dir": "/srv/k/data", "tmp_dir": "/srv/k/tmp", "service": {"daemon": "gw"}}, "quarantined"),
        "daemon-empty": ({"data_dir": "/srv/l/data", "tmp_dir": "/srv/l/tmp", "service": {"daemon": {}}}, "quarantined"),
        "unit-blank": ({"data_dir": "/srv/m/data", "tmp_dir": "/srv/m/tmp", "service": {"systemd_unit": " "}}, "quarantined"),
    }
    try:
        with connect(params, autocommit=True) as conn:
            conn.execute("CREATE TABLE gateway_schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
                         "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
            for migration in MIGRATIONS[:4]:
                with conn.transaction():
                    conn.execute(migration.sql)
                    conn.execute("INSERT INTO gateway_schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                                 (migration.version, migration.name, checksum(migration)))
            for index, (name, (metadata, dummy)) in enumerate(cases.items()):
                gateway_id = conn.execute("CALL proc_gateway_new(%s, %s, %s, %s::jsonb)", (
                    name, "http://127.0.0.1:%d" % (20000 + index), "127.0.0.1:%d" % (20000 + index), json.dumps(metadata))).fetchone()[0]
                conn.execute("CALL proc_gateways_set_ready(%s)", (gateway_id,))
        ensure_schema(params, check_mode=False)
        with connect(params) as conn:
            found = dict(conn.execute("SELECT name, status FROM gateways").fetchall())
            causes = conn.execute("SELECT count(*) FROM gateway_events WHERE kind = 'gateway.quarantined' AND cause LIKE 'registered without%'").fetchone()[0]
        assert found == {name: status for name, (dummy, status) in cases.items()}
        assert causes == len([case for case in cases.values() if case[1] == "quarantined"])
    finally:
        with connect(dict(params, login_db="postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(params["login_db"])))
