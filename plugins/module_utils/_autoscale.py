# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

The pool's autoscaler. plan() is the decision alone, a pure function of the settings, the
gateways and the hosts; decide() and finish() wrap one run of playbooks/autoscale.yml around it:

- decide takes the scaler's lease (single flight: a run that finds another run's lease says so
  and does nothing), takes over what a dead run left (gateways it was starting or retiring), then
  registers the gateways to create as 'starting' and moves the ones to retire from 'ready' to
  'retiring' in the same transaction that checks they are still ready, so no claim can get them;
- the playbook then starts and stops the gateways on their hosts (role gateway_standin);
- finish deletes the rows of gateways that were stopped while starting, retires the ones stopped
  while retiring, counts failed creations toward the circuit breaker, and gives the lease back.
"""

from __future__ import annotations

import math
import re

from ansible_collections.demiurge.gateway.plugins.module_utils._errors import InvalidInputError, LeaseHeldError
from ansible_collections.demiurge.gateway.plugins.module_utils._module import ModuleDef
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_db import pool_db_argument_spec, psycopg
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_ops import Transaction, event, retire_gateway

# Gateway names are a host's prefix and a three-digit slot number; the slot gives the port.
MAX_SLOT = 999
_STATE_COLUMNS = ("holder", "lease_expires_at", "last_scale_up_at", "last_scale_down_at", "consecutive_failures",
                  "breaker_open_until")


def _seconds_since(now, then):
    return None if then is None else (now - then).total_seconds()


def _slot(name, prefix):
    rest = name[len(prefix):] if name.startswith(prefix) else ""
    return int(rest) if re.fullmatch(r"[0-9]{3}", rest) else None


def plan(settings, gateways, hosts, state, now):
    """What one run should do. gateways: the pool's gateways not retired, each with name, status,
    host and ready_at; hosts: the gateway hosts, each with name, prefix, listen, port_base and
    optional capacity; state: the scaler's cooldown and breaker times. Returns the decision with
    its inputs: action (create, retire or none), reason, and the gateways to create or retire."""
    ready = [g for g in gateways if g["status"] == "ready"]
    starting = sum(1 for g in gateways if g["status"] == "starting")
    inputs = {"ready": len(ready), "starting": starting, "total": len(gateways), "ready_floor": settings["ready_floor"],
              "max_total": settings["max_total"], "scale_step": settings["scale_step"]}
    decision = {"action": "none", "create": [], "retire": [], "inputs": inputs}
    floor, step = settings["ready_floor"], max(settings["scale_step"], 1)
    supply = len(ready) + starting
    since_up = _seconds_since(now, state.get("last_scale_up_at"))
    since_any = min([s for s in (since_up, _seconds_since(now, state.get("last_scale_down_at"))) if s is not None],
                    default=None)

    if state.get("breaker_open_until") and state["breaker_open_until"] > now:
        return dict(decision, reason="breaker open until %s after %s failed creations"
                    % (state["breaker_open_until"].isoformat(), state.get("consecutive_failures", 0)), action="breaker_open")
    if supply < floor:
        if since_up is not None and since_up < settings["scale_up_cooldown_seconds"]:
            return dict(decision, reason="%s ready and %s starting, below the floor of %s, but the last scale-up was %.0f s "
                        "ago (cooldown %s s)" % (len(ready), starting, floor, since_up, settings["scale_up_cooldown_seconds"]))
        wanted = step * math.ceil((floor - supply) / float(step))
        create = _placements(min(wanted, settings["max_total"] - len(gateways)), gateways, hosts, settings)
        reason = "%s ready and %s starting, below the floor of %s: create %s" % (len(ready), starting, floor, len(create))
        if len(create) < wanted:
            reason += " of the %s wanted (max_total %s, %s gateway hosts with room)" % (
                wanted, settings["max_total"], sum(1 for h in hosts if _free(h, gateways, settings) > 0))
        return dict(decision, action="create" if create else "none", create=create, reason=reason)
    if len(ready) > floor:
        managed = {h["name"]: h["prefix"] for h in hosts}
        idle = sorted((g for g in ready if g["host"] in managed and _slot(g["name"], managed[g["host"]]) is not None
                       and g["ready_at"] is not None
                       and (now - g["ready_at"]).total_seconds() >= settings["idle_seconds"]),
                      key=lambda g: (g["ready_at"], g["name"]))
        retire = [g["name"] for g in idle[:min(len(ready) - floor, step)]]
        if not retire:
            return dict(decision, reason="%s ready above the floor of %s, none idle for %s s on a gateway host"
                        % (len(ready), floor, settings["idle_seconds"]))
        if since_any is not None and since_any < settings["scale_down_cooldown_seconds"]:
            return dict(decision, reason="%s ready above the floor of %s, but the last scaling was %.0f s ago "
                        "(scale-down cooldown %s s)" % (len(ready), floor, since_any, settings["scale_down_cooldown_seconds"]))
        return dict(decision, action="retire", retire=retire,
                    reason="%s ready above the floor of %s: retire %s idle for %s s or more"
                    % (len(ready), floor, len(retire), settings["idle_seconds"]))
    return dict(decision, reason="%s ready and %s starting for a floor of %s" % (len(ready), starting, floor))


def _free(host, gateways, settings):
    capacity = host.get("capacity") if host.get("capacity") is not None else settings["host_capacity"]
    return capacity - sum(1 for g in gateways if g["host"] == host["name"])


def _placements(count, gateways, hosts, settings):
    """count new gateways spread over the hosts, each to the host with the most free room (ties by
    host order), in that host's lowest free slot."""
    free = {h["name"]: _free(h, gateways, settings) for h in hosts}
    used = {h["name"]: {_slot(g["name"], h["prefix"]) for g in gateways} for h in hosts}
    placed = []
    while len(placed) < count:
        host = max(hosts, key=lambda h: free[h["name"]], default=None)
        if host is None or free[host["name"]] <= 0:
            break
        slot = next((n for n in range(1, MAX_SLOT + 1) if n not in used[host["name"]]), None)
        if slot is None:
            free[host["name"]] = 0
            continue
        used[host["name"]].add(slot)
        free[host["name"]] -= 1
        port = int(host["port_base"]) + slot
        placed.append({"name": "%s%03d" % (host["prefix"], slot), "host": host["name"], "port": port,
                       "api_url": "http://%s:%s" % (host["listen"], port), "nginx_upstream": "%s:%s" % (host["listen"], port)})
    return placed


# --- the run ----------------------------------------------------------------------------------

def _settings(conn):
    return dict(conn.execute("SELECT name, value FROM pool_settings").fetchall())


def _state(conn):
    row = conn.execute("SELECT %s, now() FROM autoscaler_state FOR UPDATE" % ", ".join(_STATE_COLUMNS)).fetchone()
    return dict(zip(_STATE_COLUMNS, row[:-1])), row[-1]


def _gateways(conn):
    rows = conn.execute("SELECT name, status, metadata->>'host', ready_at, created_by FROM gateways "
                        "WHERE status <> 'retired' ORDER BY name").fetchall()
    return [dict(zip(("name", "status", "host", "ready_at", "created_by"), row)) for row in rows]


def _validate_hosts(hosts):
    seen = set()
    for host in hosts:
        for key in ("name", "prefix", "listen", "port_base"):
            if host.get(key) in (None, ""):
                raise InvalidInputError("Gateway host %r has no %s" % (host.get("name"), key),
                                        hint="Give each gateway host its name, prefix, listen and port_base "
                                             "(playbooks/autoscale.yml reads them from gateway_standin_* of the group gateway_hosts)")
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,58}", host["prefix"]) or host["prefix"] in seen:
            raise InvalidInputError("Gateway host %s has prefix %r, which is not a unique gateway name prefix"
                                    % (host["name"], host["prefix"]), hint="Give each gateway host its own gateway_standin_name_prefix")
        seen.add(host["prefix"])


def _leftovers(gateways, run):
    """Gateways a run that no longer holds the lease was starting or retiring: that run died."""
    return [{"name": g["name"], "host": g["host"], "status": g["status"]} for g in gateways
            if g["status"] == "retiring" or (g["status"] == "starting" and g["created_by"] and g["created_by"] != run)]


def decide(call):
    params = call.params
    _validate_hosts(params["hosts"])
    with Transaction(params, call.check_mode) as conn:
        state, now = _state(conn)
        if state["holder"] and state["holder"] != params["run"] and state["lease_expires_at"] > now:
            message = ("Another autoscaler run (%s) holds the scaler until %s; this run does nothing"
                       % (state["holder"], state["lease_expires_at"].isoformat()))
            event(conn, "autoscale.skipped", run=params["run"], cause=message,
                  detail={"holder": state["holder"], "trigger": params["trigger"]})
            return {"changed": False, "acquired": False, "msg": message, "decision": None, "create": [], "retire": [],
                    "leftovers": [], "hosts": {}}
        gateways = _gateways(conn)
        leftovers = _leftovers(gateways, params["run"])
        leaving = {left["name"] for left in leftovers}
        if not params["scale"] and not leftovers:
            # Repair only, and nothing to repair: no lease, no event (reconcile runs often).
            return {"changed": False, "acquired": False, "msg": "No autoscaler run left anything behind",
                    "decision": None, "create": [], "retire": [], "leftovers": [], "hosts": {}}
        if params["scale"]:
            # Leftovers count toward the total and hold their slots until cleaned up, but are not supply.
            decision = plan(_settings(conn), [dict(g, status="leaving") if g["name"] in leaving else g for g in gateways],
                            params["hosts"], state, now)
        else:
            decision = {"action": "none", "reason": "repair only: leftovers of dead runs are cleaned up, nothing is scaled",
                        "create": [], "retire": [], "inputs": {}}
        for gateway in decision["create"]:
            gateway_id = conn.execute("INSERT INTO gateways (name, api_url, nginx_upstream, metadata, created_by) "
                                      "VALUES (%s, %s, %s, jsonb_build_object('host', %s::text), %s) RETURNING id",
                                      (gateway["name"], gateway["api_url"], gateway["nginx_upstream"], gateway["host"],
                                       params["run"])).fetchone()[0]
            event(conn, "gateway.registered", gateway=gateway_id, run=params["run"], host=gateway["host"],
                  detail={"name": gateway["name"]})
        if decision["retire"]:
            # Taken out of the claimable set only if still ready: a gateway claimed since it was read
            # stays with its organization.
            taken = {row[0] for row in conn.execute(
                "UPDATE gateways SET status = 'retiring', updated_at = now() WHERE name = ANY(%s) AND status = 'ready' "
                "RETURNING name", (decision["retire"],)).fetchall()}
            decision["retire"] = [name for name in decision["retire"] if name in taken]
        stamp = ("last_scale_up_at = now(), " if decision["create"] else "") + \
                ("last_scale_down_at = now(), " if decision["retire"] else "")
        decision.update(run=params["run"], at=now.isoformat(), trigger=params["trigger"])
        conn.execute("UPDATE autoscaler_state SET holder = %s, lease_expires_at = now() + make_interval(secs => %s), "
                     + stamp + "last_decision = %s, updated_at = now()",
                     (params["run"], params["lease_seconds"], psycopg.types.json.Jsonb(decision)))
        event(conn, "autoscale.decision", run=params["run"], step=decision["action"], cause=decision["reason"],
              detail={"inputs": decision["inputs"], "create": [g["name"] for g in decision["create"]],
                      "retire": decision["retire"], "leftovers": sorted(leaving), "trigger": params["trigger"]})
    hosts = {}
    where = dict((g["name"], g["host"]) for g in gateways)
    for gateway in decision["create"]:
        hosts.setdefault(gateway["host"], {"start": [], "stop": []})["start"].append(gateway["name"])
    for name in decision["retire"] + sorted(leaving):
        hosts.setdefault(where[name], {"start": [], "stop": []})["stop"].append(name)
    return {"changed": bool(decision["create"] or decision["retire"]), "acquired": True, "msg": decision["reason"],
            "decision": decision, "create": decision["create"], "retire": decision["retire"], "leftovers": leftovers,
            "hosts": hosts}


def finish(call):
    """Settle the run: rows of gateways stopped while starting go, gateways stopped while retiring
    are retired, failed creations count toward the breaker, and the lease is given back."""
    params = call.params
    stopped = set(params["stopped"])
    result = {"deleted": [], "retired": [], "created": [], "start_failed": [], "breaker_opened": False}
    with Transaction(params, call.check_mode) as conn:
        state, now = _state(conn)
        if state["holder"] != params["run"]:
            raise LeaseHeldError("Autoscaler run %s no longer holds the scaler's lease (held by %s); it settles nothing"
                                 % (params["run"], state["holder"] or "nobody"),
                                 hint="The run outlived lease_seconds: raise it, then run playbooks/autoscale.yml again; "
                                      "the next run cleans up after this one")
        settings = _settings(conn)
        decision = conn.execute("SELECT last_decision FROM autoscaler_state").fetchone()[0] or {}
        for name, status, gateway_id, created_by in conn.execute(
                "SELECT name, status, id, created_by FROM gateways WHERE name = ANY(%s) AND status IN ('starting', 'retiring') "
                "FOR UPDATE", (sorted(stopped),)).fetchall():
            if status == "starting" and created_by:
                conn.execute("DELETE FROM gateways WHERE id = %s", (gateway_id,))
                event(conn, "gateway.removed", gateway=gateway_id, run=params["run"], detail={"name": name, "autoscale": True})
                result["deleted"].append(name)
            elif status == "retiring":
                retire_gateway(conn, {"id": gateway_id, "name": name, "status": status}, run=params["run"])
                result["retired"].append(name)
        planned = [g["name"] for g in decision.get("create", [])]
        if planned:
            ready = {row[0] for row in conn.execute(
                "SELECT name FROM gateways WHERE name = ANY(%s) AND status NOT IN ('starting', 'retiring', 'retired') "
                "AND created_by = %s", (planned, params["run"])).fetchall()}
            result["created"] = [name for name in planned if name in ready]
            result["start_failed"] = [name for name in planned if name not in ready]
        failures = (0 if result["created"] else state["consecutive_failures"]) + len(result["start_failed"])
        opened = bool(result["start_failed"]) and failures >= settings["breaker_failures"]
        conn.execute("UPDATE autoscaler_state SET holder = NULL, lease_expires_at = NULL, consecutive_failures = %s, "
                     "breaker_open_until = CASE WHEN %s THEN now() + make_interval(secs => %s) ELSE breaker_open_until END, "
                     "updated_at = now()", (failures, opened, settings["breaker_open_seconds"]))
        if opened:
            result["breaker_opened"] = True
            event(conn, "autoscale.breaker_opened", run=params["run"],
                  cause="%s consecutive failed creations (last: %s)" % (failures, ", ".join(result["start_failed"])),
                  detail={"failures": failures, "open_seconds": settings["breaker_open_seconds"]})
        event(conn, "autoscale.finished", run=params["run"], step=decision.get("action"),
              detail=dict((key, value) for key, value in result.items() if key != "breaker_opened"))
    # Giving the lease back is bookkeeping; a change is a gateway removed or retired.
    result["changed"] = bool(result["deleted"] or result["retired"])
    result["consecutive_failures"] = failures
    if result["start_failed"]:
        call.warn("Autoscaler run %s: creating %s failed; %s consecutive failed creations (the breaker opens at %s)"
                  % (params["run"], ", ".join(result["start_failed"]), failures, settings["breaker_failures"]))
    return result


def run(call):
    params = call.params
    if params["lease_seconds"] < 1:
        raise InvalidInputError("lease_seconds %s is below 1" % params["lease_seconds"],
                                hint="Give the longest time one run may take, in seconds")
    return decide(call) if params["phase"] == "decide" else finish(call)


def autoscale_argument_spec():
    spec = pool_db_argument_spec()
    spec.update(
        phase={"type": "str", "required": True, "choices": ["decide", "finish"]},
        run={"type": "str", "required": True},
        hosts={"type": "list", "elements": "dict", "default": [], "options": {
            "name": {"type": "str", "required": True},
            "prefix": {"type": "str", "required": True},
            "listen": {"type": "str", "required": True},
            "port_base": {"type": "int", "required": True},
            "capacity": {"type": "int"},
        }},
        scale={"type": "bool", "default": True},
        stopped={"type": "list", "elements": "str", "default": []},
        lease_seconds={"type": "int", "default": 300},
        trigger={"type": "str", "default": "manual"},
    )
    return spec


POOL_AUTOSCALE = ModuleDef(autoscale_argument_spec, run)
