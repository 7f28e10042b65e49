#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pool_info
short_description: Read the gateway pool, allocations and expired leases
version_added: 0.1.0
description:
  - Returns pool counters (C(func_gateway_stats)), optionally one organization's live allocation,
    every gateway and every live allocation with its journaled steps, and always the allocations
    whose lease expired while allocating or releasing and the gateways left C(resetting) for longer
    than O(stale_seconds) (what the reconcile playbook repairs).
  - Two queries for the allocations and their journals, whatever their number.
extends_documentation_fragment:
  - demiurge.gateway.controller
  - demiurge.gateway.pool_db
  - demiurge.gateway.attributes.INFO_MODULE
options:
  organization:
    description: Also return this organization's live allocation.
    type: str
  gateways:
    description: Return every gateway.
    type: bool
    default: false
  allocations:
    description: Return every live allocation.
    type: bool
    default: false
  stale_seconds:
    description: A gateway C(resetting) for longer than this was left so by a run that died.
    type: int
    default: 300
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
- name: Read the pool
  demiurge.gateway.pool_info:
    gateways: true
  register: pool
  delegate_to: localhost
"""

RETURN = r"""
stats:
  description: Counters of gateways by status and of live allocations.
  returned: always
  type: dict
  sample: {"total": 20, "ready": 19, "allocated": 1, "starting": 0, "resetting": 0, "quarantined": 0,
           "retired": 0, "live_allocations": 1}
allocation:
  description: The organization's live allocation, null when it holds none.
  returned: when O(organization) is given
  type: dict
  sample: {"allocation_id": "5d0f6c1e-3b7a-4e51-9a55-0e6f1c2d3b4a", "status": "active", "gateway_name": "gw-001", "steps": []}
gateways:
  description: Every gateway.
  returned: when O(gateways=true)
  type: list
  elements: dict
  sample: [{"name": "gw-001", "status": "ready", "nginx_upstream": "127.0.0.1:21001"}]
allocations:
  description: Every live allocation.
  returned: when O(allocations=true)
  type: list
  elements: dict
  sample: [{"allocation_id": "5d0f6c1e-3b7a-4e51-9a55-0e6f1c2d3b4a", "status": "active", "steps": []}]
expired:
  description: Live allocations whose lease expired while allocating or releasing, with their steps.
  returned: always
  type: list
  elements: dict
  sample: [{"allocation_id": "5d0f6c1e-3b7a-4e51-9a55-0e6f1c2d3b4a", "status": "allocating",
            "lease_holder": "7f1d5a0e-9f1e-4c55-8d0e-2b4c1a9e3f10", "lease_expired": true,
            "steps": [{"step": "dns", "host": "localhost", "state": "done"}]}]
stale_resetting:
  description: Gateways left C(resetting) for longer than O(stale_seconds).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "gw-003", "status": "resetting", "metadata": {"data_dir": "/srv/gw-003/data"}}]
ready_gateways:
  description: The gateways that are V(ready) (reconcile checks that none of them holds a session).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "gw-004", "status": "ready", "metadata": {"tmp_dir": "/srv/gw-004/tmp"}}]
  version_added: 0.5.0
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._pool_ops import POOL_INFO
from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module


def main():
    run_module(POOL_INFO)


if __name__ == "__main__":
    main()
