# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter demiurge.gateway.reconcile_plan: reconcile's one decision, from three reads."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.demiurge.gateway.plugins.module_utils._errors import InvalidInputError
from ansible_collections.demiurge.gateway.plugins.module_utils._reconcile import DEFAULT_TTL, plan


def reconcile_plan(allocations, zone, edge_addresses, dns, routes, ttl=DEFAULT_TTL):
    """routes: the registered loop of demiurge.gateway.edge_route_info over the edges."""
    by_edge = {result["item"]: result["routes"] for result in (routes or {}).get("results", [])}
    try:
        return plan(allocations, zone, edge_addresses, dns, by_edge, ttl)
    except InvalidInputError as exc:
        raise AnsibleFilterError("reconcile_plan: %s" % exc) from exc


class FilterModule:
    def filters(self):
        return {"reconcile_plan": reconcile_plan}
