# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

Reconcile's one decision (module pool_drift_info): from one zone listing, one route listing per
edge and the live allocations, what to restore and what to remove. The zone and the pool are read
where the decision is made, so only the decision travels through Ansible; reconcile then runs a
task only for what differs, and a reconcile with nothing to repair costs three reads whatever the
number of organizations.

The plan only picks candidates; the modules that act compare again and keep their ownership
checks. So anything that differs in any way is a candidate: a false candidate costs one call
that changes nothing, a missed one would leave drift.
"""

from __future__ import annotations

from ansible_collections.demiurge.gateway.plugins.module_utils._dns_names import canonical, organization_label
from ansible_collections.demiurge.gateway.plugins.module_utils._edge_route import parse_upstream
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import InvalidInputError
from ansible_collections.demiurge.gateway.plugins.module_utils._module import ModuleDef
from ansible_collections.demiurge.gateway.plugins.module_utils._pdns_client import PdnsClient, pdns_argument_spec
from ansible_collections.demiurge.gateway.plugins.module_utils._pdns_rrset import list_organizations, normalize_content
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_db import pool_db_argument_spec
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_ops import Transaction, live_allocations_brief

# What pdns_rrset writes for an organization when no TTL is given (allocate and reconcile give none).
DEFAULT_TTL = 60


def _dns_is_wanted(entry, names, records, ttl, owner):
    found = {(rrset["name"], rrset["type"]): rrset for rrset in (entry or {}).get("rrsets", ())}
    return all(
        (found.get((name, "A")) or {}).get("records") == records
        and found[(name, "A")].get("ttl") == ttl and found[(name, "A")].get("owner") == owner
        for name in names)


def _route_is_wanted(route, host, upstream, owner):
    return route is not None and (route.get("host"), route.get("upstream"), route.get("owner")) == (host, upstream, owner)


def plan(allocations, zone, edge_addresses, dns, routes, ttl=DEFAULT_TTL):
    """allocations: the live allocations (pool_info); dns: list_organizations of the zone;
    routes: {edge host: list_routes of that edge}. Returns
    {dns_restore: [name], dns_orphans: [name], routes_restore: {edge: [route]},
    route_orphans: {edge: [route]}}, each name as pdns_rrset's organizations option takes it and
    each route as edge_route's routes option does, so one task per zone and per edge changes them
    all (one PATCH, one reload)."""
    zone = canonical(zone, "zone")
    records = sorted({normalize_content("A", address) for address in edge_addresses})
    live = {allocation["allocation_id"] for allocation in allocations}
    active = [allocation for allocation in allocations if allocation["status"] == "active"]
    listed = {entry["organization"]: entry for entry in dns}
    routed = {edge: {route["organization"]: route for route in listing} for edge, listing in routes.items()}

    result = {"dns_restore": [], "routes_restore": {edge: [] for edge in routed}, "dns_orphans": [],
              "route_orphans": {}}
    for allocation in active:
        label = organization_label(allocation["organization"])
        owner = allocation["allocation_id"]
        names = [label + "." + zone, "*." + label + "." + zone]
        if not _dns_is_wanted(listed.get(allocation["organization"]), names, records, ttl, owner):
            result["dns_restore"].append({"organization": allocation["organization"], "owner": owner, "state": "present"})
        host = label + "." + zone[:-1]
        upstream = parse_upstream(allocation["nginx_upstream"])
        for edge in sorted(routed):
            if not _route_is_wanted(routed[edge].get(allocation["organization"]), host, upstream, owner):
                result["routes_restore"][edge].append({"organization": allocation["organization"], "upstream": upstream,
                                                       "owner": owner, "state": "present"})
    # Orphans carry an owner no live allocation has; records and routes without an owner were not
    # written by the collection and are left alone.
    result["dns_orphans"] = [{"organization": entry["organization"], "owner": entry["owner"], "state": "absent"}
                             for entry in dns if entry["owner"] is not None and entry["owner"] not in live]
    result["route_orphans"] = {
        edge: [{"organization": route["organization"], "owner": route["owner"], "state": "absent"}
               for route in routed[edge].values() if route["owner"] is not None and route["owner"] not in live]
        for edge in routed}
    return result


def drift_info(call):
    """The zone is listed first and the live allocations read after: a name published after the
    listing belongs to an allocation that is live by the time it is read, so an allocation in
    progress is never taken for an orphan. The edges' routes were listed before the call."""
    params = call.params
    routes = params["routes"]
    if not all(isinstance(listing, list) for listing in routes.values()):
        raise InvalidInputError("routes must map each edge host to its list of routes",
                                hint="Pass edge_route_info's routes for each edge, for example {edge1: [...]}")
    organizations = list_organizations(PdnsClient.from_params(params), canonical(params["zone"], "zone"))
    with Transaction(params, True) as conn:
        allocations = live_allocations_brief(conn)
    decision = plan(allocations, params["zone"], params["edge_addresses"], organizations, routes, params["ttl"])
    return dict(decision, changed=False, live_allocations=len(allocations), listed_organizations=len(organizations))


def drift_argument_spec():
    spec = pool_db_argument_spec()
    spec.update(pdns_argument_spec())
    spec.update(
        zone={"type": "str", "required": True},
        edge_addresses={"type": "list", "elements": "str", "required": True},
        routes={"type": "dict", "required": True},
        ttl={"type": "int", "default": DEFAULT_TTL},
    )
    return spec


POOL_DRIFT_INFO = ModuleDef(drift_argument_spec, drift_info)
