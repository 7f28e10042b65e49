# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

Gateway pool operations over the platform's routines: one transaction per
call, values only as parameters, check mode as a rolled-back transaction.
"""

from __future__ import annotations

from ansible_collections.demiurge.gateway.plugins.module_utils._errors import (
    DatabaseError,
    InvalidInputError,
    PoolExhaustedError,
)
from ansible_collections.demiurge.gateway.plugins.module_utils._module import ModuleDef
from ansible_collections.demiurge.gateway.plugins.module_utils._dns_names import organization_label
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_db import (
    connect,
    describe,
    pool_db_argument_spec,
    psycopg,
    require_psycopg,
)
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_migrations import POOL_EXHAUSTED_SQLSTATE

STEP_STATES = ("started", "done", "undone", "failed")
_GATEWAY_COLUMNS = "id, name, api_url, nginx_upstream, status, status_reason, metadata, created_at, updated_at, ready_at"


def _org(organization):
    """Canonical organization UUID text (validated like the DNS label)."""
    return organization_label(organization)[len("org-"):]


def _plain(row, names):
    out = {}
    for name, value in zip(names, row):
        out[name] = value.isoformat() if hasattr(value, "isoformat") else (str(value) if hasattr(value, "hex") else value)
    return out


class Transaction:
    """One transaction, committed only when the call may change something (not in check mode),
    rolled back otherwise. It opens and closes its own connection unless given one (`conn`), which
    it leaves open for the caller's next transaction."""

    def __init__(self, params, check_mode, conn=None):
        require_psycopg()
        self.params, self.check_mode = params, check_mode
        self.conn, self.owns_conn = conn, conn is None

    def __enter__(self):
        if self.owns_conn:
            self.conn = connect(self.params)
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None and not self.check_mode:
                try:
                    self.conn.commit()
                except psycopg.Error as commit_error:
                    exc_type, exc = type(commit_error), commit_error
            elif not self.conn.broken:
                self.conn.rollback()
        finally:
            if self.owns_conn:
                self.conn.close()
        if exc_type is not None and issubclass(exc_type, psycopg.Error):
            if getattr(exc, "sqlstate", None) == POOL_EXHAUSTED_SQLSTATE:
                raise PoolExhaustedError("Pool exhausted on %s: no ready gateway is available" % describe(self.params),
                                         hint="Register more gateways, or release organizations that no longer need one")
            raise DatabaseError("Pool database %s refused the change, nothing was written: %s"
                                % (describe(self.params), str(exc).strip()),
                                hint="Fix the cause named by PostgreSQL and run again")
        return False


def _gateway(conn, name):
    row = conn.execute("SELECT %s FROM gateways WHERE name = %%s FOR UPDATE" % _GATEWAY_COLUMNS, (name,)).fetchone()
    return None if row is None else _plain(row, _GATEWAY_COLUMNS.split(", "))


def _live_allocation_of_gateway(conn, gateway_id):
    row = conn.execute("SELECT id, organization_id FROM organizations_gateways WHERE gateway_id = %s AND stopped_at IS NULL",
                       (gateway_id,)).fetchone()
    return None if row is None else {"allocation_id": str(row[0]), "organization": str(row[1])}


# --- pool_gateway ---------------------------------------------------------------------------

def ensure_gateway(call):
    params = call.params
    with Transaction(params, call.check_mode) as conn:
        before = _gateway(conn, params["name"])
        if params["state"] == "absent":
            return _remove_gateway(conn, before, params)
        for key in ("api_url", "nginx_upstream"):
            if before is None and not params[key]:
                raise InvalidInputError("Registering gateway %s needs %s" % (params["name"], key),
                                        hint="Give api_url (http://ip:port) and nginx_upstream (ip:port)")
        if before is None:
            conn.execute("CALL proc_gateway_new(%s, %s, %s, %s::jsonb)", (
                params["name"], params["api_url"], params["nginx_upstream"], psycopg.types.json.Jsonb(params["metadata"] or {})))
        else:
            changes = {key: params[key] for key in ("api_url", "nginx_upstream") if params[key] and params[key] != before[key]}
            if params["metadata"] is not None and params["metadata"] != before["metadata"]:
                changes["metadata"] = psycopg.types.json.Jsonb(params["metadata"])
            if changes:
                live = _live_allocation_of_gateway(conn, before["id"])
                if live and ("nginx_upstream" in changes or "api_url" in changes):
                    raise InvalidInputError(
                        "Gateway %s is allocated to organization %s; its addresses cannot change now"
                        % (params["name"], live["organization"]), hint="Release the organization first")
                for column, value in changes.items():
                    conn.execute("UPDATE gateways SET %s = %%s, updated_at = now() WHERE id = %%s" % column,
                                 (value, before["id"]))
        _set_status(conn, params["name"], params["status"], params["status_reason"])
        after = _gateway(conn, params["name"])
    changed = _comparable(before) != _comparable(after)
    return {"changed": changed, "gateway": after, "diff": {"before": _comparable(before) or {}, "after": _comparable(after)}}


def _comparable(gateway):
    if gateway is None:
        return None
    return {key: gateway[key] for key in ("name", "api_url", "nginx_upstream", "status", "status_reason", "metadata")}


def _set_status(conn, name, status, reason):
    if status is None:
        return
    gateway = _gateway(conn, name)
    if gateway["status"] == status and (status == "ready" or gateway["status_reason"] == reason):
        return
    if status == "ready":
        conn.execute("CALL proc_gateways_set_ready(%s)", (gateway["id"],))
        return
    live = _live_allocation_of_gateway(conn, gateway["id"])
    if live:
        raise InvalidInputError("Gateway %s is allocated to organization %s and cannot become %s"
                                % (name, live["organization"], status), hint="Release the organization first")
    conn.execute("UPDATE gateways SET status = %s, status_reason = %s, updated_at = now() WHERE id = %s",
                 (status, reason, gateway["id"]))
    conn.execute("INSERT INTO gateway_events (kind, gateway_id, detail) VALUES (%s, %s, %s)",
                 ("gateway." + status, gateway["id"], psycopg.types.json.Jsonb({"from": gateway["status"], "reason": reason})))


def _remove_gateway(conn, before, params):
    if before is None:
        return {"changed": False, "gateway": None, "diff": {"before": {}, "after": {}}}
    live = _live_allocation_of_gateway(conn, before["id"])
    if live:
        raise InvalidInputError("Gateway %s is allocated to organization %s" % (params["name"], live["organization"]),
                                hint="Release the organization before removing its gateway")
    history = conn.execute("SELECT 1 FROM organizations_gateways WHERE gateway_id = %s LIMIT 1", (before["id"],)).fetchone()
    if history:
        # Allocations refer to it: keep the row for history, never hand it out again.
        conn.execute("UPDATE gateways SET status = 'retired', updated_at = now() WHERE id = %s", (before["id"],))
    else:
        conn.execute("DELETE FROM gateway_events WHERE gateway_id = %s", (before["id"],))
        conn.execute("DELETE FROM gateways WHERE id = %s", (before["id"],))
    return {"changed": True, "gateway": None, "diff": {"before": _comparable(before), "after": {}}}


def gateway_argument_spec():
    spec = pool_db_argument_spec()
    spec.update(
        name={"type": "str", "required": True},
        api_url={"type": "str"},
        nginx_upstream={"type": "str"},
        metadata={"type": "dict"},
        status={"type": "str", "choices": ["ready", "quarantined", "retired"]},
        status_reason={"type": "str"},
        state={"type": "str", "default": "present", "choices": ["present", "absent"]},
    )
    return spec


POOL_GATEWAY = ModuleDef(gateway_argument_spec, ensure_gateway)


# --- pool_allocation ------------------------------------------------------------------------

_ALLOCATION_QUERY = """
SELECT og.id, og.organization_id, og.status, og.started_at, og.activated_at, og.stopped_at, og.stop_reason,
       og.lease_expires_at, g.id, g.name, g.api_url, g.nginx_upstream, g.status, g.metadata
FROM organizations_gateways og JOIN gateways g ON g.id = og.gateway_id
"""
_ALLOCATION_NAMES = ("allocation_id", "organization", "status", "started_at", "activated_at", "stopped_at",
                     "stop_reason", "lease_expires_at", "gateway_id", "gateway_name", "api_url", "nginx_upstream",
                     "gateway_status", "gateway_metadata")


def _allocation(conn, where, args):
    row = conn.execute(_ALLOCATION_QUERY + where, args).fetchone()
    if row is None:
        return None
    allocation = _plain(row, _ALLOCATION_NAMES)
    allocation["steps"] = _steps(conn, allocation["allocation_id"])
    return allocation


def _steps(conn, allocation_id):
    rows = conn.execute("SELECT step, state, detail, updated_at FROM allocation_steps WHERE allocation_id = %s "
                        "ORDER BY updated_at, step", (allocation_id,)).fetchall()
    return [_plain(row, ("step", "state", "detail", "updated_at")) for row in rows]


def live_allocation(conn, organization):
    return _allocation(conn, "WHERE og.organization_id = %s AND og.stopped_at IS NULL", (organization,))


def ensure_allocation(call):
    params = call.params
    organization = _org(params["organization"])
    with Transaction(params, call.check_mode) as conn:
        before = live_allocation(conn, organization)
        state = params["state"]
        if state == "present":
            row = conn.execute("CALL proc_organizations_start_gateway(%s, make_interval(secs => %s))",
                               (organization, params["lease_seconds"])).fetchone()
            created = row[2]
        elif state == "active":
            if before is None:
                raise InvalidInputError("Organization %s holds no gateway to activate" % organization,
                                        hint="Claim one with state=present first")
            created = before["status"] != "active"
            if created:
                conn.execute("UPDATE organizations_gateways SET status = 'active', activated_at = now(), "
                             "lease_expires_at = NULL WHERE id = %s", (before["allocation_id"],))
                conn.execute("INSERT INTO gateway_events (kind, gateway_id, organization_id, allocation_id) "
                             "VALUES ('allocation.active', %s, %s, %s)",
                             (before["gateway_id"], organization, before["allocation_id"]))
        elif state == "releasing":
            if before is None:
                return {"changed": False, "allocation": None, "created": False}
            created = before["status"] != "releasing"
            if created:
                conn.execute("UPDATE organizations_gateways SET status = 'releasing', "
                             "lease_expires_at = now() + make_interval(secs => %s) WHERE id = %s",
                             (params["lease_seconds"], before["allocation_id"]))
        else:
            if before is None:
                return {"changed": False, "allocation": None, "created": False}
            conn.execute("CALL proc_organizations_gateways_stop(%s, %s)", (organization, params["reason"]))
            created = True
        after = live_allocation(conn, organization) if state != "absent" else \
            _allocation(conn, "WHERE og.id = %s", (before["allocation_id"],))
    return {"changed": bool(created), "created": bool(created) and state == "present", "allocation": after,
            "diff": {"before": _summary(before), "after": _summary(after if state != "absent" else None)}}


def _summary(allocation):
    if allocation is None:
        return {}
    return {key: allocation[key] for key in ("allocation_id", "organization", "status", "gateway_name")}


def allocation_argument_spec():
    spec = pool_db_argument_spec()
    spec.update(
        organization={"type": "str", "required": True},
        state={"type": "str", "default": "present", "choices": ["present", "active", "releasing", "absent"]},
        lease_seconds={"type": "int", "default": 600},
        reason={"type": "str", "default": "released", "choices": ["released", "failed"]},
    )
    return spec


POOL_ALLOCATION = ModuleDef(allocation_argument_spec, ensure_allocation)


# --- pool_allocation_step -------------------------------------------------------------------

def write_step(params, state, detail=None, conn=None):
    """Upsert step params["step"] of live allocation params["allocation_id"] and extend its lease;
    params also holds the connection options. One transaction, on `conn` when given."""
    with Transaction(params, False, conn) as conn:
        live = conn.execute(
            "UPDATE organizations_gateways SET lease_expires_at = now() + make_interval(secs => %s) "
            "WHERE id = %s AND stopped_at IS NULL RETURNING id", (params["lease_seconds"], params["allocation_id"])).fetchone()
        if live is None:
            raise InvalidInputError("Allocation %s is not live" % params["allocation_id"],
                                    hint="Journal steps only for a claimed, not yet stopped allocation")
        conn.execute(
            "INSERT INTO allocation_steps (allocation_id, step, state, detail) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (allocation_id, step) DO UPDATE SET state = EXCLUDED.state, "
            "detail = allocation_steps.detail || EXCLUDED.detail, updated_at = now()",
            (params["allocation_id"], params["step"], state, psycopg.types.json.Jsonb(detail or {})))


def record_step(call):
    params = call.params
    with Transaction(params, True) as conn:
        row = conn.execute("SELECT state, detail FROM allocation_steps WHERE allocation_id = %s AND step = %s",
                           (params["allocation_id"], params["step"])).fetchone()
    if row is not None and row[0] == params["step_state"] and (not params["detail"] or row[1] == params["detail"]):
        return {"changed": False}
    if not call.check_mode:
        write_step(params, params["step_state"], params["detail"])
    return {"changed": True, "diff": {"before": {"state": row[0] if row else None}, "after": {"state": params["step_state"]}}}


def step_argument_spec():
    spec = pool_db_argument_spec()
    spec.update(
        allocation_id={"type": "str", "required": True},
        step={"type": "str", "required": True},
        step_state={"type": "str", "required": True, "choices": list(STEP_STATES)},
        detail={"type": "dict"},
        lease_seconds={"type": "int", "default": 600},
    )
    return spec


POOL_ALLOCATION_STEP = ModuleDef(step_argument_spec, record_step)


# --- pool_info ------------------------------------------------------------------------------

def pool_info(call):
    params = call.params
    with Transaction(params, True) as conn:
        names = ("total", "starting", "ready", "allocated", "resetting", "quarantined", "retired", "live_allocations")
        stats = _plain(conn.execute("SELECT * FROM func_gateway_stats()").fetchone(), names)
        result = {"changed": False, "stats": stats}
        if params["organization"]:
            result["allocation"] = live_allocation(conn, _org(params["organization"]))
        if params["gateways"]:
            rows = conn.execute("SELECT %s FROM gateways ORDER BY created_at, id" % _GATEWAY_COLUMNS).fetchall()
            result["gateways"] = [_plain(row, _GATEWAY_COLUMNS.split(", ")) for row in rows]
        if params["allocations"]:
            rows = conn.execute("SELECT og.id FROM organizations_gateways og WHERE og.stopped_at IS NULL "
                                "ORDER BY og.started_at").fetchall()
            result["allocations"] = [_allocation(conn, "WHERE og.id = %s", (row[0],)) for row in rows]
        rows = conn.execute("SELECT og.id FROM organizations_gateways og WHERE og.stopped_at IS NULL "
                            "AND og.status IN ('allocating', 'releasing') AND og.lease_expires_at < now() "
                            "ORDER BY og.started_at").fetchall()
        result["expired"] = [_allocation(conn, "WHERE og.id = %s", (row[0],)) for row in rows]
    return result


def info_argument_spec():
    spec = pool_db_argument_spec()
    spec.update(
        organization={"type": "str"},
        gateways={"type": "bool", "default": False},
        allocations={"type": "bool", "default": False},
    )
    return spec


POOL_INFO = ModuleDef(info_argument_spec, pool_info)
