"""Event reading, recording, pruning and the pool settings, against a scripted connection."""

import pytest

from ansible_collections.demiurge.gateway.plugins.module_utils import _pool_ops
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import InvalidInputError, PoolExhaustedError
from ansible_collections.demiurge.gateway.plugins.module_utils._module import Call
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_events import (
    SETTINGS,
    ensure_settings,
    event_info,
    prune_events,
    record_events,
)

from test_pool_ops import ORG, PARAMS, Connection

INFO = dict(PARAMS, organization=None, gateway=None, allocation_id=None, kinds=None, since=None, until=None,
            after_id=0, limit=100)


@pytest.fixture
def db(monkeypatch):
    def use(*script):
        conn = Connection(list(script))
        monkeypatch.setattr(_pool_ops, "connect", lambda params: conn)
        return conn
    return use


def test_event_info_filters_with_parameters_only_and_pages(db):
    conn = db(("FROM gateway_events", [(7, None, "step.failed", None, ORG, None, "dns", "localhost", "refused", "r", 0.1, {})]))
    result = event_info(Call(dict(INFO, organization=ORG.upper(), kinds=["step."], since="2026-11-26T10:00:00Z",
                                  limit=1), False, False, None))
    sql, args = conn.statements[0]
    assert "e.organization_id = %s" in sql and "split_part(e.kind" in sql and "e.at >= %s" in sql
    assert ORG in args and ["step."] in args and args[-1] == 1
    assert result["events"][0]["kind"] == "step.failed" and result["next_after_id"] == 7


@pytest.mark.parametrize("bad", [{"limit": 0}, {"limit": 1001}, {"since": "yesterday"}, {"organization": "acme"}])
def test_event_info_refuses_bad_filters_before_reading(db, bad):
    conn = db()
    with pytest.raises(InvalidInputError):
        event_info(Call(dict(INFO, **bad), False, False, None))
    assert conn.statements == []


def test_only_playbook_kinds_may_be_recorded_and_nothing_is_written_on_refusal(db):
    conn = db()
    events = [{"kind": "job.succeeded", "step": "reconcile"}, {"kind": "allocation.activated"}]
    with pytest.raises(InvalidInputError, match="allocation.activated"):
        record_events(Call(dict(PARAMS, events=events), False, False, None))
    with pytest.raises(InvalidInputError, match="the job's name"):
        record_events(Call(dict(PARAMS, events=[{"kind": "job.failed"}]), False, False, None))
    assert conn.statements == []


def test_recorded_events_share_one_transaction_and_check_mode_writes_none(db):
    conn = db()
    events = [{"kind": "job.succeeded", "step": "reconcile"},
              {"kind": "reconcile.repaired", "step": "dns_restored", "organization": ORG}]
    assert record_events(Call(dict(PARAMS, events=events), True, False, None)) == {"changed": True, "recorded": 2}
    assert conn.statements == []
    record_events(Call(dict(PARAMS, events=events), False, False, None))
    inserts = conn.ran("INSERT INTO gateway_events")
    assert [args[0] for args in inserts] == ["job.succeeded", "reconcile.repaired"]
    assert [statement[0] for statement in conn.statements].count("COMMIT") == 1


def test_prune_keeps_events_a_sink_has_not_read_and_refuses_less_than_a_day(db):
    conn = db(("SELECT count(*) FROM gateway_events WHERE at < now() - %s * interval '1 day' AND", [(3,)]),
              ("SELECT count(*) FROM gateway_events", [(5,)]))
    call = Call(dict(PARAMS, older_than_days=30.0, batch_size=1000), True, False, None)
    result = prune_events(call)
    assert result["pruned"] == 3 and result["kept_unshipped"] == 2 and call.warnings
    assert "event_sinks" in conn.statements[0][0]
    with pytest.raises(InvalidInputError):
        prune_events(Call(dict(PARAMS, older_than_days=0.5, batch_size=1000), False, False, None))


def test_settings_change_only_what_differs(db):
    unset = dict(PARAMS, **dict.fromkeys(SETTINGS))
    conn = db(("SELECT name, value FROM pool_settings", [("ready_floor", 5), ("scale_step", 3)]))
    result = ensure_settings(Call(dict(unset, ready_floor=5), False, True, None))
    assert result["changed"] is False and conn.ran("INSERT INTO pool_settings") == []
    result = ensure_settings(Call(dict(unset, ready_floor=7), False, True, None))
    assert result["changed"] and result["diff"] == {"before": {"ready_floor": 5, "scale_step": 3},
                                                    "after": {"ready_floor": 7, "scale_step": 3}}
    for name, value in (("ready_floor", -1), ("scale_step", 0), ("breaker_failures", 0), ("idle_seconds", -5)):
        with pytest.raises(InvalidInputError, match=name):
            ensure_settings(Call(dict(unset, **{name: value}), False, True, None))


def test_a_refused_claim_is_recorded_as_an_event_in_its_own_transaction(db, monkeypatch):
    conn = db()

    def exhausted(*args, **kwargs):
        raise PoolExhaustedError("Pool exhausted on db: no ready gateway is available")
    monkeypatch.setattr(conn, "execute", lambda sql, params=(): exhausted() if "proc_organizations_start_gateway" in sql
                        else Connection.execute(conn, sql, params))
    with pytest.raises(PoolExhaustedError):
        _pool_ops.ensure_allocation(Call(dict(PARAMS), False, True, None))
    refused = conn.ran("INSERT INTO gateway_events")
    assert refused and refused[0][0] == "allocation.refused" and refused[0][2] == ORG
