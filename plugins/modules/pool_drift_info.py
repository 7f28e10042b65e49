#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pool_drift_info
short_description: Find which names and routes differ from the live allocations
version_added: 0.4.0
description:
  - Reconcile's one decision. Reads the zone once (PowerDNS) and then the live allocations (the
    pool), compares them with the routes listed on each edge, and returns what to restore and what
    to remove, in the form M(demiurge.gateway.pdns_rrset) (O(demiurge.gateway.pdns_rrset#module:organizations))
    and M(demiurge.gateway.edge_route) (O(demiurge.gateway.edge_route#module:routes)) take it.
  - The zone and the pool are read here and only the decision is returned, so a reconcile with
    nothing to repair costs the same few reads at 10 or 10,000 organizations.
  - A name or route is restored when anything about it differs from what the allocation publishes
    (records, TTL, owner, host or upstream). The modules that act compare again and keep their
    ownership checks, so the decision never overrides an owner.
  - An orphan is a record set or route whose owner is no live allocation. Those without an owner
    were not written by the collection and are left alone.
  - List the routes before calling this module, which lists the zone before it reads the pool, so
    that a name or route published meanwhile belongs to an allocation that is already live when it
    is read, and an allocation in progress is never taken for an orphan.
extends_documentation_fragment:
  - demiurge.gateway.controller
  - demiurge.gateway.pool_db
  - demiurge.gateway.pdns_api
  - demiurge.gateway.attributes.INFO_MODULE
options:
  zone:
    description: The zone the organizations' names are in.
    type: str
    required: true
  edge_addresses:
    description: The addresses every organization's name points at.
    type: list
    elements: str
    required: true
  routes:
    description:
      - The routes on each edge host, as M(demiurge.gateway.edge_route_info) lists them, by edge host.
    type: dict
    required: true
  ttl:
    description: The TTL the names are published with.
    type: int
    default: 60
seealso:
  - module: demiurge.gateway.pdns_rrset
  - module: demiurge.gateway.edge_route
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
- name: List the routes on every edge
  demiurge.gateway.edge_route_info:
    config_root: "{{ hostvars[item].demiurge_edge_config_root }}"
  loop: "{{ groups['edges'] }}"
  delegate_to: "{{ item }}"
  register: listed

- name: Decide what differs from the live allocations
  demiurge.gateway.pool_drift_info:
    zone: "{{ demiurge_zone }}"
    edge_addresses: "{{ demiurge_edge_addresses }}"
    routes: "{{ dict(listed.results | map(attribute='item') | zip(listed.results | map(attribute='routes'))) }}"
  register: drift

- name: Restore the names that differ
  demiurge.gateway.pdns_rrset:
    zone: "{{ demiurge_zone }}"
    records: "{{ demiurge_edge_addresses }}"
    organizations: "{{ drift.dns_restore }}"
  when: drift.dns_restore | length > 0
"""

RETURN = r"""
dns_restore:
  description: Active allocations whose names are missing or differ, each with C(organization), C(owner) and C(state).
  returned: always
  type: list
  elements: dict
  sample: [{"organization": "0b5e9b7c-1a2b-4c3d-8e9f-001122334455", "owner": "5d0f6c1e-3b7a-4e51-9a55-0e6f1c2d3b4a",
            "state": "present"}]
dns_orphans:
  description: Organizations whose names no live allocation owns, each with C(organization), C(owner) and C(state=absent).
  returned: always
  type: list
  elements: dict
routes_restore:
  description: By edge host, the routes of active allocations that are missing or differ there.
  returned: always
  type: dict
  sample: {"edge1": [{"organization": "0b5e9b7c-1a2b-4c3d-8e9f-001122334455", "upstream": "127.0.0.1:15501",
                      "owner": "5d0f6c1e-3b7a-4e51-9a55-0e6f1c2d3b4a", "state": "present"}]}
route_orphans:
  description: By edge host, the routes no live allocation owns, each with C(state=absent).
  returned: always
  type: dict
live_allocations:
  description: How many live allocations were read.
  returned: always
  type: int
  sample: 10000
listed_organizations:
  description: How many organizations have names in the zone.
  returned: always
  type: int
  sample: 10000
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module
from ansible_collections.demiurge.gateway.plugins.module_utils._reconcile import POOL_DRIFT_INFO


def main():
    run_module(POOL_DRIFT_INFO)


if __name__ == "__main__":
    main()
