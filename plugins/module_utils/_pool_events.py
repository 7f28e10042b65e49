# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

Reading, recording and pruning life-cycle events, and the pool settings the
metrics read. The life cycle writes its own events (_pool_ops.event); what is
recorded here is what only a playbook knows: a periodic job's outcome or a
reconcile repair.
"""

from __future__ import annotations

import datetime

from ansible_collections.demiurge.gateway.plugins.module_utils._dns_names import organization_id
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import InvalidInputError
from ansible_collections.demiurge.gateway.plugins.module_utils._module import ModuleDef
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_db import pool_db_argument_spec
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_ops import Transaction, _plain, event

MAX_PAGE = 1000
_EVENT_COLUMNS = ("id", "at", "kind", "gateway_id", "organization_id", "allocation_id", "step", "host", "cause",
                  "run", "duration_seconds", "detail")
# Kinds a playbook may record; the life cycle's own kinds are written only with the change they describe.
RECORDED_KINDS = ("job.started", "job.succeeded", "job.failed", "reconcile.repaired")


def _uuid(value, what):
    try:
        return organization_id(value)
    except InvalidInputError:
        raise InvalidInputError("%s %r is not a UUID" % (what, value), hint="Give the id as printed by pool_info")


def _timestamp(value, what):
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError("%s %r is not an ISO 8601 time" % (what, value),
                                hint="Write it like 2026-11-26T10:00:00+00:00")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


# --- pool_event_info ------------------------------------------------------------------------

def event_info(call):
    params = call.params
    if not 1 <= params["limit"] <= MAX_PAGE:
        raise InvalidInputError("limit %s is outside 1 to %s" % (params["limit"], MAX_PAGE),
                                hint="Page through with after_id instead of asking for more at once")
    where, args = ["e.id > %s"], [params["after_id"]]
    if params["organization"]:
        where.append("e.organization_id = %s")
        args.append(_uuid(params["organization"], "organization"))
    if params["allocation_id"]:
        where.append("e.allocation_id = %s")
        args.append(_uuid(params["allocation_id"], "allocation_id"))
    if params["gateway"]:
        where.append("e.gateway_id IN (SELECT id FROM gateways WHERE name = %s OR id::text = %s)")
        args.extend([params["gateway"], params["gateway"].lower()])
    if params["kinds"]:
        # A kind ending in '.' selects its whole family ('step.' is every step event).
        where.append("(e.kind = ANY(%s) OR split_part(e.kind, '.', 1) || '.' = ANY(%s))")
        args.extend([params["kinds"], params["kinds"]])
    for key, operator in (("since", ">="), ("until", "<")):
        if params[key]:
            where.append("e.at %s %%s" % operator)
            args.append(_timestamp(params[key], key))
    query = ("SELECT %s FROM gateway_events e WHERE %s ORDER BY e.id LIMIT %%s"
             % (", ".join("e." + column for column in _EVENT_COLUMNS), " AND ".join(where)))
    with Transaction(params, True) as conn:
        rows = conn.execute(query, args + [params["limit"]]).fetchall()
    events = [_plain(row, _EVENT_COLUMNS) for row in rows]
    return {"changed": False, "events": events,
            "next_after_id": events[-1]["id"] if len(events) == params["limit"] else None}


def event_info_argument_spec():
    spec = pool_db_argument_spec()
    spec.update(
        organization={"type": "str"},
        gateway={"type": "str"},
        allocation_id={"type": "str"},
        kinds={"type": "list", "elements": "str"},
        since={"type": "str"},
        until={"type": "str"},
        after_id={"type": "int", "default": 0},
        limit={"type": "int", "default": 100},
    )
    return spec


POOL_EVENT_INFO = ModuleDef(event_info_argument_spec, event_info)


# --- pool_event -----------------------------------------------------------------------------

def record_events(call):
    params = call.params
    rows = []
    for number, item in enumerate(params["events"], 1):
        if item.get("kind") not in RECORDED_KINDS:
            raise InvalidInputError("Event %s has kind %r; a playbook may record only %s"
                                    % (number, item.get("kind"), ", ".join(RECORDED_KINDS)),
                                    hint="The life cycle's own events are written by its modules")
        if item["kind"].startswith("job.") and not item.get("step"):
            raise InvalidInputError("Event %s (%s) needs step, the job's name" % (number, item["kind"]),
                                    hint="Give step: reconcile, data_sync or your job's name")
        rows.append(dict(
            kind=item["kind"], step=item.get("step"), host=item.get("host"), cause=item.get("cause"),
            run=item.get("run"), detail=item.get("detail") or {},
            organization=_uuid(item["organization"], "organization") if item.get("organization") else None,
            allocation=_uuid(item["allocation_id"], "allocation_id") if item.get("allocation_id") else None))
    if rows and not call.check_mode:
        with Transaction(params, False) as conn:
            for row in rows:
                event(conn, **row)
    return {"changed": bool(rows), "recorded": len(rows)}


def event_argument_spec():
    spec = pool_db_argument_spec()
    spec.update(events={"type": "list", "elements": "dict", "required": True})
    return spec


POOL_EVENT = ModuleDef(event_argument_spec, record_events)


# --- pool_event_prune -----------------------------------------------------------------------

def prune_events(call):
    """Delete events older than older_than_days that every reader (the sinks, the rollup behind the
    metrics) has read, in batches; the counters live in tables of their own and are untouched."""
    params = call.params
    if params["older_than_days"] < 1:
        raise InvalidInputError("older_than_days %s is below 1" % params["older_than_days"],
                                hint="Keep at least a day of events; the metrics do not need them")
    # A fractional day count is allowed: make_interval() takes whole days only.
    condition = ("at < now() - %s * interval '1 day' AND NOT EXISTS (SELECT 1 FROM event_sinks s "
                 "WHERE (txid, id) > (s.last_txid, s.last_id))")
    pruned = 0
    if not call.check_mode:
        # The rollup is a reader like the sinks: bring it up to date so the counters lose nothing.
        with Transaction(params, False) as conn:
            conn.execute("SELECT func_events_rollup()")
    with Transaction(params, True) as conn:
        candidates = conn.execute("SELECT count(*) FROM gateway_events WHERE " + condition,
                                  (params["older_than_days"],)).fetchone()[0]
        unshipped = conn.execute("SELECT count(*) FROM gateway_events WHERE at < now() - %s * interval '1 day'",
                                 (params["older_than_days"],)).fetchone()[0] - candidates
    if not call.check_mode:
        while True:
            with Transaction(params, False) as conn:
                deleted = conn.execute("DELETE FROM gateway_events WHERE id IN (SELECT id FROM gateway_events WHERE "
                                       + condition + " ORDER BY id LIMIT %s)",
                                       (params["older_than_days"], params["batch_size"])).rowcount
            pruned += deleted
            if deleted < params["batch_size"]:
                break
    result = {"changed": bool(candidates), "pruned": pruned if not call.check_mode else candidates,
              "kept_unshipped": unshipped}
    if unshipped:
        call.warn("%s old events are kept because an event sink has not read them yet; see event_sinks" % unshipped)
    return result


def prune_argument_spec():
    spec = pool_db_argument_spec()
    spec.update(older_than_days={"type": "float", "required": True}, batch_size={"type": "int", "default": 10000})
    return spec


POOL_EVENT_PRUNE = ModuleDef(prune_argument_spec, prune_events)


# --- pool_settings --------------------------------------------------------------------------

# Name: (lowest value, what it counts). The database holds every setting with its default
# (migration 4), so the metrics and the autoscaler read one source.
SETTINGS = {
    "ready_floor": (0, "a count of gateways"),
    "scale_step": (1, "a count of gateways"),
    "max_total": (0, "a count of gateways"),
    "host_capacity": (0, "a count of gateways"),
    "scale_up_cooldown_seconds": (0, "seconds"),
    "scale_down_cooldown_seconds": (0, "seconds"),
    "idle_seconds": (0, "seconds"),
    "breaker_failures": (1, "a count of failed creations"),
    "breaker_open_seconds": (0, "seconds"),
    "gateway_fault_limit": (1, "a count of failed allocations"),
}


def ensure_settings(call):
    params = call.params
    wanted = {name: params[name] for name in SETTINGS if params[name] is not None}
    for name, value in wanted.items():
        lowest, unit = SETTINGS[name]
        if value < lowest:
            raise InvalidInputError("%s %s is below %s" % (name, value, lowest),
                                    hint="Give %s, %s or more" % (unit, lowest))
    with Transaction(params, call.check_mode) as conn:
        before = dict(conn.execute("SELECT name, value FROM pool_settings").fetchall())
        for name, value in wanted.items():
            if before.get(name) != value:
                conn.execute("INSERT INTO pool_settings (name, value) VALUES (%s, %s) ON CONFLICT (name) "
                             "DO UPDATE SET value = EXCLUDED.value, updated_at = now()", (name, value))
    after = dict(before, **wanted)
    return {"changed": after != before, "settings": after, "diff": {"before": before, "after": after}}


def settings_argument_spec():
    spec = pool_db_argument_spec()
    spec.update((name, {"type": "int"}) for name in SETTINGS)
    spec["ready_floor"]["aliases"] = ["min_ready"]
    return spec


POOL_SETTINGS = ModuleDef(settings_argument_spec, ensure_settings)
