# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

Gateway pool operations over the platform's routines: one transaction per
call, values only as parameters, check mode as a rolled-back transaction.
"""

from __future__ import annotations

import os
import re
import time
import uuid


from ansible_collections.demiurge.gateway.plugins.module_utils._dns_names import organization_id
from ansible_collections.demiurge.gateway.plugins.module_utils._edge_route import parse_upstream
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import (
    DatabaseError,
    GatewayError,
    InvalidInputError,
    LeaseHeldError,
    PoolExhaustedError,
)
from ansible_collections.demiurge.gateway.plugins.module_utils._gateway_api import DEFAULT_HEALTH_PATH, health
from ansible_collections.demiurge.gateway.plugins.module_utils._module import ModuleDef
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_db import (
    connect,
    describe,
    pool_db_argument_spec,
    psycopg,
    require_psycopg,
)
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_migrations import POOL_EXHAUSTED_SQLSTATE

STEP_STATES = ("started", "done", "undone", "failed", "unknown")
_GATEWAY_COLUMNS = "id, name, api_url, nginx_upstream, status, status_reason, metadata, created_at, updated_at, ready_at"


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
        committing = exc_type is None and not self.check_mode
        try:
            if committing:
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
            if committing and self.conn.broken:
                # The server may have committed before the connection went away.
                raise DatabaseError("The connection to pool database %s was lost while committing; whether the change "
                                    "was written is unknown: %s" % (describe(self.params), str(exc).strip()),
                                    hint="Run again: every change is idempotent, and reconcile.yml repairs a run that stopped here")
            raise DatabaseError("Pool database %s refused the change, nothing was written: %s"
                                % (describe(self.params), str(exc).strip()),
                                hint="Fix the cause named by PostgreSQL and run again", outcome="not_applied")
        return False


def event(conn, kind, gateway=None, organization=None, allocation=None, step=None, host=None, cause=None,
          run=None, duration=None, detail=None):
    """Record one life-cycle event in the caller's transaction (see migration 3: a trigger keeps the
    counters and announces it on NOTIFY channel demiurge_gateway_events)."""
    conn.execute("INSERT INTO gateway_events (kind, gateway_id, organization_id, allocation_id, step, host, cause, run, "
                 "duration_seconds, detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                 (kind, gateway, organization, allocation, step, host, None if cause is None else str(cause)[:2000],
                  run, duration, psycopg.types.json.Jsonb(detail or {})))


def _gateway(conn, name):
    # A retired gateway's name may be in use again (migration 4): the name means the one not retired.
    row = conn.execute("SELECT %s FROM gateways WHERE name = %%s AND status <> 'retired' FOR UPDATE" % _GATEWAY_COLUMNS,
                       (name,)).fetchone()
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
        if params["api_url"]:
            params = dict(params, api_url=_api_url(params["api_url"]))
        if params["nginx_upstream"]:
            params = dict(params, nginx_upstream=parse_upstream(params["nginx_upstream"]))
        _require_own_addresses(conn, params["name"], params["api_url"] or before["api_url"],
                               params["nginx_upstream"] or before["nginx_upstream"])
        final_status = params["status"] or (before or {}).get("status")
        if final_status == "ready" and (params["metadata"] is not None or params["status"] == "ready"):
            _require_runnable(conn, params["name"],
                              params["metadata"] if params["metadata"] is not None else (before or {}).get("metadata"))
        if params["status"] == "ready" and (before is None or before["status"] != "ready"):
            url = params["api_url"] or before["api_url"]
            if not health(url, params["health_path"], params["health_timeout"]):
                raise InvalidInputError("Gateway %s does not answer GET %s%s with 200; it is not put in service"
                                        % (params["name"], url, params["health_path"]),
                                        hint="Start the gateway (or fix api_url and health_path), then run again")
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
        if params["scrubbed"] and before is not None:
            event(conn, "gateway.scrubbed", gateway=before["id"])
        # A status read earlier may be stale: from_status moves the gateway only from what the caller saw.
        if params["from_status"] is None or (before is not None and before["status"] in params["from_status"]):
            _set_status(conn, params["name"], params["status"], params["status_reason"])
        after = _gateway(conn, params["name"])
    changed = _comparable(before) != _comparable(after)
    return {"changed": changed, "gateway": after, "diff": {"before": _comparable(before) or {}, "after": _comparable(after)}}


_UNIT = re.compile(r"^[A-Za-z0-9:_.@-]+$")


def _plain_path(value):
    """An absolute path without '..', '.', doubled slashes or control characters, and not '/'."""
    return (isinstance(value, str) and value.startswith("/") and value != "/" and os.path.normpath(value) == value
            and not any(ord(char) < 32 for char in value))


def _require_runnable(conn, name, metadata):
    """A gateway in the pool must carry what the life cycle needs: its data directory, to restore
    into and to wipe; its private /tmp, where it keeps its session and token, to wipe and to check;
    and its service, to stop and restart it. None of its directories may be another gateway's on
    the same host, or hold one: a recycle wipes them. Without this, every allocation that claimed
    it would fail, or a recycle would wipe or hand over what belongs to another organization."""
    metadata = metadata or {}
    problems = ["%s (a plain absolute path on its host, not '/', got %r)" % (key, metadata.get(key))
                for key in ("data_dir", "tmp_dir") if not _plain_path(metadata.get(key))]
    service = metadata.get("service")
    daemon = service.get("daemon") if isinstance(service, dict) else None
    if isinstance(daemon, dict):
        if not (isinstance(daemon.get("name"), str) and daemon["name"] and _plain_path(daemon.get("pidfile"))
                and isinstance(daemon.get("argv"), list) and daemon["argv"] and all(isinstance(arg, str) for arg in daemon["argv"])):
            problems.append("service.daemon (the options of demiurge.gateway.daemon: name, argv, pidfile; got %r)" % (daemon,))
    elif not (isinstance(service, dict) and isinstance(service.get("systemd_unit"), str) and _UNIT.match(service["systemd_unit"])):
        problems.append("service ({daemon: {<options of demiurge.gateway.daemon>}} or {systemd_unit: <unit>}, got %r)" % (service,))
    if not problems:
        if metadata["data_dir"] == metadata["tmp_dir"] or _nested(metadata["data_dir"], metadata["tmp_dir"]):
            problems.append("data_dir and tmp_dir that are distinct directories (got %s and %s)" % (metadata["data_dir"], metadata["tmp_dir"]))
        rows = conn.execute("SELECT name, metadata->>'data_dir', metadata->>'tmp_dir' FROM gateways WHERE name <> %s "
                            "AND status <> 'retired' AND coalesce(metadata->>'host', 'localhost') = %s",
                            (name, metadata.get("host") or "localhost")).fetchall()
        for other, other_data, other_tmp in rows:
            for mine in (metadata["data_dir"], metadata["tmp_dir"]):
                for theirs in (other_data, other_tmp):
                    if theirs and (mine == theirs or _nested(mine, theirs)):
                        problems.append("directories of its own (%s is, or holds, or is inside gateway %s's %s)" % (mine, other, theirs))
    if problems:
        raise InvalidInputError("Gateway %s cannot be put in service: its metadata lacks %s" % (name, "; ".join(problems)),
                                hint="Register it with metadata.data_dir and metadata.tmp_dir (its own /data and /tmp on its host) "
                                     "and metadata.service, as docs/howto-inventory.md shows")


def _nested(one, other):
    return one.startswith(other.rstrip("/") + "/") or other.startswith(one.rstrip("/") + "/")


def _require_own_addresses(conn, name, api_url, upstream):
    """Two gateways at one address would each serve the other's organization, and no check could tell."""
    row = conn.execute("SELECT name FROM gateways WHERE name <> %s AND status <> 'retired' AND (api_url = %s OR nginx_upstream = %s)",
                       (name, api_url, upstream)).fetchone()
    if row:
        raise InvalidInputError("Gateway %s cannot use api_url %s and nginx_upstream %s: gateway %s already uses one of them"
                                % (name, api_url, upstream, row[0]),
                                hint="Give each gateway its own address, or remove the other gateway first")


# A host name, an IPv4 literal or a bracketed IPv6 literal, then an explicit port; an optional path
# of plain characters. Nothing else: the URL is joined with paths and sent requests.
_API_URL = re.compile(r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):([0-9]{1,5})(/[A-Za-z0-9._~/-]*)?$")


def _api_url(url):
    """http(s)://host:port[/path] with a port from 1 to 65535; anything else is refused."""
    match = _API_URL.match(url or "")
    if not match or not 1 <= int(match.group(3)) <= 65535:
        raise InvalidInputError("api_url %r is not an http(s) URL with a host, a port from 1 to 65535 and nothing else"
                                % (url,),
                                hint="Give the gateway's API as http://<host>:<port>, for example http://127.0.0.1:21001")
    return url.rstrip("/")


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
        if gateway["status"] == "quarantined":
            # Returned by someone who fixed it: its failures so far no longer count.
            conn.execute("UPDATE gateways SET faults_in_a_row = 0 WHERE id = %s", (gateway["id"],))
        return
    live = _live_allocation_of_gateway(conn, gateway["id"])
    if live:
        raise InvalidInputError("Gateway %s is allocated to organization %s and cannot become %s"
                                % (name, live["organization"], status), hint="Release the organization first")
    conn.execute("UPDATE gateways SET status = %s, status_reason = %s, updated_at = now() WHERE id = %s",
                 (status, reason, gateway["id"]))
    event(conn, "gateway." + status, gateway=gateway["id"], cause=reason, detail={"from": gateway["status"]})


def _remove_gateway(conn, before, params):
    if before is None:
        return {"changed": False, "gateway": None, "diff": {"before": {}, "after": {}}}
    live = _live_allocation_of_gateway(conn, before["id"])
    if live:
        raise InvalidInputError("Gateway %s is allocated to organization %s" % (params["name"], live["organization"]),
                                hint="Release the organization before removing its gateway")
    retire_gateway(conn, before)
    return {"changed": True, "gateway": None, "diff": {"before": _comparable(before), "after": {}}}


def retire_gateway(conn, gateway, run=None):
    """Take a gateway (id, name, status) out of the pool for good, in the caller's transaction."""
    history = conn.execute("SELECT 1 FROM organizations_gateways WHERE gateway_id = %s LIMIT 1", (gateway["id"],)).fetchone()
    if history:
        # Allocations refer to it: keep the row for history, never hand it out again.
        conn.execute("UPDATE gateways SET status = 'retired', updated_at = now() WHERE id = %s", (gateway["id"],))
        event(conn, "gateway.retired", gateway=gateway["id"], run=run, detail={"from": gateway["status"]})
    else:
        conn.execute("DELETE FROM gateways WHERE id = %s", (gateway["id"],))
        event(conn, "gateway.removed", gateway=gateway["id"], run=run, detail={"name": gateway["name"]})


def gateway_argument_spec():
    spec = pool_db_argument_spec()
    spec.update(
        name={"type": "str", "required": True},
        api_url={"type": "str"},
        nginx_upstream={"type": "str"},
        metadata={"type": "dict"},
        status={"type": "str", "choices": ["ready", "quarantined", "retired"]},
        status_reason={"type": "str"},
        health_path={"type": "str", "default": DEFAULT_HEALTH_PATH},
        health_timeout={"type": "float", "default": 5},
        scrubbed={"type": "bool", "default": False},
        from_status={"type": "list", "elements": "str"},
        state={"type": "str", "default": "present", "choices": ["present", "absent"]},
    )
    return spec


POOL_GATEWAY = ModuleDef(gateway_argument_spec, ensure_gateway)


# --- pool_allocation ------------------------------------------------------------------------

_ALLOCATION_QUERY = """
SELECT og.id, og.organization_id, og.status, og.started_at, og.activated_at, og.stopped_at, og.stop_reason,
       og.lease_expires_at, og.lease_holder, og.lease_expires_at < now(), g.id, g.name, g.api_url, g.nginx_upstream,
       g.status, g.metadata
FROM organizations_gateways og JOIN gateways g ON g.id = og.gateway_id
"""
_ALLOCATION_NAMES = ("allocation_id", "organization", "status", "started_at", "activated_at", "stopped_at",
                     "stop_reason", "lease_expires_at", "lease_holder", "lease_expired", "gateway_id", "gateway_name",
                     "api_url", "nginx_upstream", "gateway_status", "gateway_metadata")
_POLL_SECONDS = 0.2


def _allocations(conn, where, args):
    """Allocations matching where, each with its journal; two queries whatever their number."""
    found = [_plain(row, _ALLOCATION_NAMES) for row in conn.execute(_ALLOCATION_QUERY + where, args).fetchall()]
    steps = {}
    if found:
        rows = conn.execute("SELECT allocation_id, step, host, state, detail, updated_at FROM allocation_steps "
                            "WHERE allocation_id = ANY(%s) ORDER BY updated_at, step, host",
                            ([allocation["allocation_id"] for allocation in found],)).fetchall()
        for row in rows:
            steps.setdefault(str(row[0]), []).append(_plain(row[1:], ("step", "host", "state", "detail", "updated_at")))
    for allocation in found:
        allocation["steps"] = steps.get(allocation["allocation_id"], [])
    return found


def _allocation(conn, where, args):
    found = _allocations(conn, where, args)
    return found[0] if found else None


def live_allocations_brief(conn):
    """Every live allocation with what its names and routes are made of, and no journal."""
    rows = conn.execute("SELECT og.id, og.organization_id, og.status, g.nginx_upstream FROM organizations_gateways og "
                        "JOIN gateways g ON g.id = og.gateway_id WHERE og.stopped_at IS NULL ORDER BY og.started_at").fetchall()
    return [_plain(row, ("allocation_id", "organization", "status", "nginx_upstream")) for row in rows]


def live_allocation(conn, organization, lock=False):
    return _allocation(conn, "WHERE og.organization_id = %s AND og.stopped_at IS NULL" + (" FOR UPDATE OF og" if lock else ""),
                       (organization,))


def _lease(allocation):
    return "run %s (lease until %s)" % (allocation["lease_holder"] or "of unknown id", allocation["lease_expires_at"])


def _require_holder(allocation, holder, action):
    """Only the run that holds the lease acts on an allocation in progress."""
    if allocation["status"] == "active":
        return  # no run holds an active allocation
    if holder and allocation["lease_holder"] and allocation["lease_holder"] != holder:
        raise LeaseHeldError(
            "Organization %s's allocation %s is held by %s; this run may not %s it"
            % (allocation["organization"], allocation["allocation_id"], _lease(allocation), action),
            hint="Leave it to that run; reconcile.yml repairs it if that run died", lease_holder=allocation["lease_holder"])


def _wait_for_other_run(params, allocation, wanted):
    """Poll an allocation another run holds until that run brings it to status `wanted` (returned)
    or ends it (None). Fails naming the run when its lease expires or the wait times out."""
    deadline = time.monotonic() + params["wait_seconds"]
    while True:
        with Transaction(params, True) as conn:
            now = _allocation(conn, "WHERE og.id = %s", (allocation["allocation_id"],))
        if now["stopped_at"] is not None:
            return None, now
        if now["status"] == wanted:
            return now, None
        if now["lease_expired"]:
            raise LeaseHeldError("Organization %s's allocation %s was left %s by %s, whose lease has expired"
                                 % (now["organization"], now["allocation_id"], now["status"], _lease(now)),
                                 hint="That run died: reconcile.yml repairs it, then run again")
        if time.monotonic() > deadline:
            raise LeaseHeldError("Organization %s's allocation %s is still %s by %s after %s s"
                                 % (now["organization"], now["allocation_id"], now["status"], _lease(now),
                                    params["wait_seconds"]),
                                 hint="Run again later, or raise wait_seconds")
        time.sleep(_POLL_SECONDS)


def _result(changed, allocation, before, holder, **extra):
    return dict(extra, changed=bool(changed), allocation=allocation, lease_holder=holder,
                diff={"before": _summary(before), "after": _summary(allocation)})


def _claim(call, organization, holder, conn=None):
    params = call.params
    shared = conn
    try:
        with Transaction(params, call.check_mode, shared) as conn:
            row = conn.execute("CALL proc_organizations_start_gateway(%s, make_interval(secs => %s))",
                               (organization, params["lease_seconds"])).fetchone()
            created = row[2]
            if created:
                conn.execute("UPDATE organizations_gateways SET lease_holder = %s WHERE id = %s", (holder, row[0]))
            allocation = live_allocation(conn, organization)
    except PoolExhaustedError as exhausted:
        # The claim rolled back; the refusal is still an event (its own transaction), for the alerts.
        if not call.check_mode:
            with Transaction(params, False, shared) as conn:
                event(conn, "allocation.refused", organization=organization, run=holder, cause=exhausted.msg,
                      detail={"operation": "allocate"})
        raise
    if created:
        return _result(True, allocation, None, holder, created=True)
    if allocation["status"] == "active":
        return _result(False, allocation, allocation, holder, created=False)
    if allocation["status"] == "releasing":
        raise LeaseHeldError("Organization %s's gateway is being released by %s" % (organization, _lease(allocation)),
                             hint="Allocate again once that release has finished", lease_holder=allocation["lease_holder"])
    # Another run is allocating for this organization: its outcome is ours, and it is never undone here.
    active, ended = _wait_for_other_run(params, allocation, "active")
    if active is not None:
        return _result(False, active, active, holder, created=False)
    raise LeaseHeldError("The allocation %s for organization %s by %s ended as %s while this run waited"
                         % (ended["allocation_id"], organization, _lease(ended), ended["status"]),
                         hint="See that run's output for its cause, then run again")


def _activate(call, organization, holder, conn=None):
    with Transaction(call.params, call.check_mode, conn) as conn:
        before = live_allocation(conn, organization, lock=True)
        if before is None:
            if call.check_mode and (call.params["allocation_id"] or call.params["organizations"] is not None):
                return _result(True, None, None, holder)  # claimed by this run's check-mode claim
            raise InvalidInputError("Organization %s holds no gateway to activate" % organization,
                                    hint="Claim one with state=present first")
        if before["status"] == "releasing":
            raise InvalidInputError("Organization %s's gateway is being released by %s" % (organization, _lease(before)),
                                    hint="Allocate again once that release has finished")
        changed = before["status"] != "active"
        if changed:
            _require_holder(before, holder, "activate")
            started = conn.execute("UPDATE organizations_gateways SET status = 'active', activated_at = now(), "
                                   "lease_expires_at = NULL, lease_holder = NULL, tmp_handshake_token = NULL WHERE id = %s "
                                   "RETURNING extract(epoch FROM now() - started_at)::float8",
                                   (before["allocation_id"],)).fetchone()
            conn.execute("UPDATE gateways SET faults_in_a_row = 0 WHERE id = %s AND faults_in_a_row <> 0", (before["gateway_id"],))
            event(conn, "allocation.activated", gateway=before["gateway_id"], organization=organization,
                  allocation=before["allocation_id"], run=holder, duration=started[0], detail={"operation": "allocate"})
        after = live_allocation(conn, organization)
    return _result(changed, after, before, holder)


def _take_lease(call, organization, holder, status):
    """Make this run the holder of the organization's live allocation, to release it (status
    'releasing') or to repair it ('leased': an allocation in progress whose lease expired)."""
    params = call.params
    with Transaction(params, call.check_mode) as conn:
        before = live_allocation(conn, organization, lock=True)
        if before is None:
            return _result(False, None, None, holder, held=False)
        mine = before["lease_holder"] == holder
        free = before["lease_expired"] or mine
        if status == "releasing" and before["status"] == "allocating" and not before["lease_expired"]:
            raise LeaseHeldError("Organization %s is being allocated by %s" % (organization, _lease(before)),
                                 hint="Release it once that allocation has finished")
        if status == "leased" and (before["status"] == "active" or not free):
            return _result(False, before, before, holder, held=False)
        wait = status == "releasing" and before["status"] == "releasing" and not free
        if not wait:
            conn.execute("UPDATE organizations_gateways SET status = %s, lease_holder = %s, "
                         "lease_expires_at = now() + make_interval(secs => %s), "
                         "releasing_at = CASE WHEN %s = 'releasing' THEN coalesce(releasing_at, now()) END WHERE id = %s",
                         (before["status"] if status == "leased" else "releasing", holder, params["lease_seconds"],
                          before["status"] if status == "leased" else "releasing", before["allocation_id"]))
            if not mine:
                kind = "allocation.releasing" if before["status"] == "active" else "lease.taken_over"
                event(conn, kind, gateway=before["gateway_id"], organization=organization, allocation=before["allocation_id"],
                      run=holder, step=None if kind == "allocation.releasing" else before["status"],
                      detail={"from_run": before["lease_holder"]})
            after = live_allocation(conn, organization)
    if not wait:
        return _result(not mine or before["status"] == "active", after, before, holder, held=True)
    _wait_for_other_run(params, before, "released")
    return _result(False, None, before, holder, held=False)


def _finish(call, organization, holder):
    """End the allocation and, in the same transaction, return its gateway to the pool (only after
    a verified scrub), quarantine it, or leave it resetting."""
    params = call.params
    with Transaction(params, call.check_mode) as conn:
        before = live_allocation(conn, organization, lock=True)
        if before is None:
            return _result(False, None, None, holder)
        _require_holder(before, holder, "end")
        conn.execute("CALL proc_organizations_gateways_stop(%s, %s)", (organization, params["reason"]))
        if params["gateway_status"] == "ready":
            event(conn, "gateway.scrubbed", gateway=before["gateway_id"], allocation=before["allocation_id"], run=holder)
        status, reason = params["gateway_status"], params["gateway_reason"]
        if params["reason"] == "failed":
            status, reason = _count_gateway_fault(conn, before, holder, status, reason)
        _set_status(conn, before["gateway_name"], status, reason)
        after = _allocation(conn, "WHERE og.id = %s", (before["allocation_id"],))
    return dict(_result(True, after, before, holder), diff={"before": _summary(before), "after": {}})


def _count_gateway_fault(conn, allocation, holder, status, reason):
    """A failed allocation whose journal blames its gateway (a step recorded gateway_fault) counts
    against the gateway. At the pool's gateway_fault_limit in a row, a gateway that would return to
    the pool is quarantined instead, with the last cause."""
    fault = conn.execute("SELECT step, detail->>'error' FROM allocation_steps WHERE allocation_id = %s "
                         "AND detail->>'gateway_fault' = 'true' ORDER BY updated_at DESC LIMIT 1",
                         (allocation["allocation_id"],)).fetchone()
    if fault is None:
        return status, reason
    count, limit = conn.execute(
        "UPDATE gateways SET faults_in_a_row = faults_in_a_row + 1 WHERE id = %s "
        "RETURNING faults_in_a_row, (SELECT value FROM pool_settings WHERE name = 'gateway_fault_limit')",
        (allocation["gateway_id"],)).fetchone()
    event(conn, "gateway.fault", gateway=allocation["gateway_id"], allocation=allocation["allocation_id"], step=fault[0],
          cause=fault[1], run=holder, detail={"in_a_row": count})
    if status != "ready" or limit is None or count < limit:
        return status, reason
    # The same step failing on other gateways too points at what they share (the platform API, the
    # edges' network): setting them all aside would empty the pool for someone else's outage.
    shared = conn.execute("SELECT count(DISTINCT gateway_id) FROM gateway_events WHERE kind = 'gateway.fault' AND step = %s "
                          "AND gateway_id <> %s AND at > now() - interval '15 minutes'",
                          (fault[0], allocation["gateway_id"])).fetchone()[0]
    if shared:
        return status, reason
    return "quarantined", ("it failed %d allocations in a row; the last at its %s step: %s. Fix it, then return it "
                           "with pool_gateway status=ready" % (count, fault[0], fault[1]))


def _unlease(call, organization, holder):
    """A run that stops without finishing gives its lease up, so the next run (or reconcile.yml)
    takes over at once instead of after the lease's time."""
    with Transaction(call.params, call.check_mode) as conn:
        row = conn.execute("UPDATE organizations_gateways SET lease_expires_at = now() WHERE organization_id = %s "
                           "AND stopped_at IS NULL AND status IN ('allocating', 'releasing') AND lease_holder = %s "
                           "RETURNING id, gateway_id, status", (organization, holder)).fetchone()
        if row is not None:
            # step: what the run was doing ('allocating' or 'releasing'), counted by the metrics.
            event(conn, "lease.given_up", gateway=row[1], organization=organization, allocation=row[0], run=holder,
                  step=row[2])
        after = live_allocation(conn, organization)
    return _result(row is not None, after, after, holder)


_BATCH_STATES = {"present": _claim, "active": _activate}


def _each(call, holder):
    """A batch (organizations): claims or activations, each organization in its own transaction,
    so one that fails fails alone; the task then fails naming each."""
    params = call.params
    if params["state"] not in _BATCH_STATES:
        raise InvalidInputError("organizations takes state present or active, not %s" % params["state"],
                                hint="Change one organization at a time with organization for state %s" % params["state"])
    one = _BATCH_STATES[params["state"]]
    results, failed, unknown = {}, {}, []
    conn = None  # one connection for the list, each organization in a transaction of its own
    try:
        for given in params["organizations"]:
            key = str(given)
            try:
                organization = organization_id(key)
                if organization in results:
                    continue  # listed twice: one claim, not a wait for this very run
                if conn is None or conn.broken:
                    conn = connect(params)
                results[organization] = one(call, organization, holder, conn)
            except GatewayError as exc:
                failed[key] = str(exc)
                if exc.details.get("outcome", exc.outcome) != "not_applied":
                    unknown.append(key)
    finally:
        if conn is not None:
            conn.close()
    result = {"changed": any(found["changed"] for found in results.values()), "lease_holder": holder,
              "allocations": {organization: found["allocation"] for organization, found in results.items()},
              "failed_organizations": failed, "unknown_organizations": unknown}
    if params["state"] == "present":
        result["created_organizations"] = [organization for organization, found in results.items() if found["created"]]
    if failed:
        raise GatewayError("%d of %d organizations were not %s, the others were: %s" % (
            len(failed), len(params["organizations"]), "claimed" if params["state"] == "present" else "activated",
            "; ".join("%s: %s" % item for item in sorted(failed.items()))),
            hint="Fix each cause named, then run again", outcome="unknown" if unknown else "not_applied", **result)
    return result


def ensure_allocation(call):
    params = call.params
    holder = params["lease_holder"] or str(uuid.uuid4())
    if params["organizations"] is not None:
        return _each(call, holder)
    organization = organization_id(params["organization"])
    state = params["state"]
    if state == "present":
        return _claim(call, organization, holder)
    if state == "active":
        return _activate(call, organization, holder)
    if state in ("releasing", "leased"):
        return _take_lease(call, organization, holder, state)
    if state == "unleased":
        return _unlease(call, organization, holder)
    return _finish(call, organization, holder)


def _summary(allocation):
    if allocation is None:
        return {}
    return {key: allocation[key] for key in ("allocation_id", "organization", "status", "gateway_name")}


def allocation_argument_spec():
    spec = pool_db_argument_spec()
    spec.update(
        organization={"type": "str"},
        organizations={"type": "list", "elements": "str"},
        state={"type": "str", "default": "present",
               "choices": ["present", "active", "releasing", "leased", "unleased", "absent"]},
        lease_seconds={"type": "int", "default": 600},
        lease_holder={"type": "str"},
        allocation_id={"type": "str"},
        wait_seconds={"type": "float", "default": 60},
        reason={"type": "str", "default": "released", "choices": ["released", "failed"]},
        gateway_status={"type": "str", "default": "resetting", "choices": ["resetting", "ready", "quarantined"]},
        gateway_reason={"type": "str"},
    )
    return spec


POOL_ALLOCATION = ModuleDef(allocation_argument_spec, ensure_allocation,
                            mutually_exclusive=[("organization", "organizations")],
                            required_one_of=[("organization", "organizations")],
                            required_if=[("gateway_status", "quarantined", ["gateway_reason"]),
                                         ("state", "unleased", ["lease_holder"])])


def store_handshake_token(params, allocation_id, holder, token):
    """Record the one-time token the gateway will exchange for its organization's configuration."""
    with Transaction(params, False) as conn:
        row = conn.execute("UPDATE organizations_gateways SET tmp_handshake_token = %s, tmp_handshake_token_used_at = NULL "
                           "WHERE id = %s AND stopped_at IS NULL AND status = 'allocating' "
                           "AND (lease_holder IS NULL OR lease_holder = %s) RETURNING id",
                           (token, allocation_id, holder)).fetchone()
    if row is None:
        raise LeaseHeldError("Allocation %s is no longer in progress under this run's lease" % allocation_id,
                             hint="Another run or reconcile.yml took it over; nothing was sent to the gateway")


def handshake_exchanged(params, allocation_id, token):
    """Whether the platform's API exchanged this allocation's token (func_organizations_gateways_get
    records the exchange in the same statement that answers it). The one independent proof that a
    gateway took its organization: the real gateway answers 200 to a token the API refused."""
    with Transaction(params, True) as conn:
        row = conn.execute("SELECT tmp_handshake_token_used_at IS NOT NULL FROM organizations_gateways "
                           "WHERE id = %s AND tmp_handshake_token = %s", (allocation_id, token)).fetchone()
    return bool(row and row[0])


def renew_leases(params, allocation_ids, conn):
    """Extend the leases this run (params["lease_holder"]) still holds on these live allocations, by
    params["lease_seconds"] from now; never shorten one. One transaction on `conn`."""
    with Transaction(params, False, conn) as conn:
        conn.execute("UPDATE organizations_gateways SET lease_expires_at = greatest(lease_expires_at, "
                     "now() + make_interval(secs => %s)) WHERE id = ANY(%s::uuid[]) AND stopped_at IS NULL "
                     "AND lease_holder = %s", (params["lease_seconds"], list(allocation_ids), params.get("lease_holder")))


# --- pool_allocation_step -------------------------------------------------------------------

def write_step(params, state, detail=None, conn=None):
    """Upsert the journal record (params["step"], params["host"]) of live allocation
    params["allocation_id"], extend its lease and record the event; only the lease holder
    (params["lease_holder"], when given) may. params also holds the connection options. One
    transaction, on `conn` when given."""
    detail = detail or {}
    step, host, holder = params["step"], params.get("host") or "", params.get("lease_holder")
    with Transaction(params, False, conn) as conn:
        live = conn.execute(
            "UPDATE organizations_gateways SET lease_expires_at = now() + make_interval(secs => %s) "
            "WHERE id = %s AND stopped_at IS NULL AND (%s::text IS NULL OR lease_holder IS NULL OR lease_holder = %s) "
            "RETURNING organization_id, gateway_id, status",
            (params["lease_seconds"], params["allocation_id"], holder, holder)).fetchone()
        if live is None:
            raise LeaseHeldError("Allocation %s is not live under this run's lease" % params["allocation_id"],
                                 hint="It ended, or another run (reconcile.yml) took it over; this run stops here")
        # The statement's snapshot still shows the record as it was: a finished step's duration runs from its start.
        started = conn.execute(
            "WITH before AS (SELECT state, updated_at FROM allocation_steps WHERE allocation_id = %(a)s AND step = %(s)s "
            "AND host = %(h)s), written AS (INSERT INTO allocation_steps (allocation_id, step, host, state, detail) "
            "VALUES (%(a)s, %(s)s, %(h)s, %(state)s, %(d)s) ON CONFLICT (allocation_id, step, host) DO UPDATE SET "
            "state = EXCLUDED.state, detail = allocation_steps.detail || EXCLUDED.detail, updated_at = now() RETURNING 1) "
            "SELECT extract(epoch FROM now() - updated_at)::float8 FROM before, written WHERE before.state = 'started'",
            {"a": params["allocation_id"], "s": step, "h": host, "state": state,
             "d": psycopg.types.json.Jsonb(detail)}).fetchone()
        operation = "allocate" if live[2] == "allocating" else "release"
        ids = {"gateway": live[1], "organization": live[0], "allocation": params["allocation_id"], "run": holder}
        event(conn, "step." + state, step=step, host=host or None, cause=detail.get("error"),
              duration=started[0] if started and state != "started" else None,
              detail={"operation": operation}, **ids)


def record_step(call):
    params = call.params
    with Transaction(params, True) as conn:
        row = conn.execute("SELECT state, detail FROM allocation_steps WHERE allocation_id = %s AND step = %s AND host = %s",
                           (params["allocation_id"], params["step"], params["host"])).fetchone()
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
        host={"type": "str", "default": ""},
        step_state={"type": "str", "required": True, "choices": list(STEP_STATES)},
        detail={"type": "dict"},
        lease_seconds={"type": "int", "default": 600},
        lease_holder={"type": "str"},
    )
    return spec


POOL_ALLOCATION_STEP = ModuleDef(step_argument_spec, record_step)


# --- pool_info ------------------------------------------------------------------------------

def pool_info(call):
    params = call.params
    with Transaction(params, True) as conn:
        names = ("total", "starting", "ready", "allocated", "resetting", "quarantined", "retiring", "retired",
                 "live_allocations")
        stats = _plain(conn.execute("SELECT * FROM func_gateway_stats()").fetchone(), names)
        result = {"changed": False, "stats": stats}
        if params["organization"]:
            result["allocation"] = live_allocation(conn, organization_id(params["organization"]))
        if params["gateways"]:
            rows = conn.execute("SELECT %s FROM gateways ORDER BY created_at, id" % _GATEWAY_COLUMNS).fetchall()
            result["gateways"] = [_plain(row, _GATEWAY_COLUMNS.split(", ")) for row in rows]
        if params["allocations"]:
            result["allocations"] = _allocations(conn, "WHERE og.stopped_at IS NULL ORDER BY og.started_at", ())
        result["expired"] = _allocations(conn, "WHERE og.stopped_at IS NULL AND og.status IN ('allocating', 'releasing') "
                                         "AND og.lease_expires_at < now() ORDER BY og.started_at", ())
        # Checked by reconcile for a session none of its allocations gave them.
        rows = conn.execute("SELECT %s FROM gateways WHERE status = 'ready' ORDER BY created_at, id" % _GATEWAY_COLUMNS).fetchall()
        result["ready_gateways"] = [_plain(row, _GATEWAY_COLUMNS.split(", ")) for row in rows]
        # Left resetting by a run that died between ending an allocation and the scrub.
        rows = conn.execute("SELECT %s FROM gateways WHERE status = 'resetting' "
                            "AND updated_at < now() - make_interval(secs => %%s) ORDER BY updated_at" % _GATEWAY_COLUMNS,
                            (params["stale_seconds"],)).fetchall()
        result["stale_resetting"] = [_plain(row, _GATEWAY_COLUMNS.split(", ")) for row in rows]
    return result


def info_argument_spec():
    spec = pool_db_argument_spec()
    spec.update(
        organization={"type": "str"},
        gateways={"type": "bool", "default": False},
        allocations={"type": "bool", "default": False},
        stale_seconds={"type": "int", "default": 300},
    )
    return spec


POOL_INFO = ModuleDef(info_argument_spec, pool_info)
