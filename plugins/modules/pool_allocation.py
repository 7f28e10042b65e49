#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pool_allocation
short_description: Allocate a gateway to an organization, activate or release it
version_added: 0.1.0
description:
  - V(present) claims a ready gateway for O(organization) with C(proc_organizations_start_gateway).
    An organization that already holds a gateway gets the same one back (not changed). Concurrent
    calls never hand one gateway to two organizations, nor two gateways to one organization.
  - The claim starts a lease (O(lease_seconds)); the allocation stays C(allocating) until
    V(active). An allocation whose lease runs out before that is repaired by the reconcile playbook.
  - V(active) marks the organization's allocation active and ends its lease.
  - V(releasing) marks a release in progress (with a lease, for crash repair).
  - V(absent) ends the allocation (C(proc_organizations_gateways_stop)); the gateway goes to
    C(resetting) until it is reset and healthy. Releasing an organization without a gateway is a no-op.
  - Fails with a clean "pool exhausted" error when no ready gateway exists.
  - One transaction per call; check mode runs it and rolls back, so it reports the gateway that
    would be claimed.
  - Runs in the controller process when the task runs on the controller.
extends_documentation_fragment:
  - demiurge.gateway.pool_db
  - demiurge.gateway.attributes
options:
  organization:
    description: Organization UUID.
    type: str
    required: true
  state:
    description: Wanted state of the organization's allocation.
    type: str
    choices: [present, active, releasing, absent]
    default: present
  lease_seconds:
    description: Lease of an allocation in progress, for V(present) and V(releasing).
    type: int
    default: 600
  reason:
    description: Why the allocation ends, for V(absent).
    type: str
    choices: [released, failed]
    default: released
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
- name: Claim a gateway for an organization
  demiurge.gateway.pool_allocation:
    organization: 0b5e9b7c-1a2b-4c3d-8e9f-001122334455
  register: claim
  delegate_to: localhost

- name: Release it
  demiurge.gateway.pool_allocation:
    organization: 0b5e9b7c-1a2b-4c3d-8e9f-001122334455
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
created:
  description: Whether this call claimed a new gateway (false when the organization already held one).
  returned: always
  type: bool
  sample: true
allocation:
  description: The allocation with its gateway and journaled steps; null when there is none.
  returned: always
  type: dict
  sample: {"allocation_id": "5d0f6c1e-3b7a-4e51-9a55-0e6f1c2d3b4a", "organization": "0b5e9b7c-1a2b-4c3d-8e9f-001122334455",
           "status": "allocating", "gateway_name": "gw-001", "api_url": "http://127.0.0.1:21001",
           "nginx_upstream": "127.0.0.1:21001", "steps": []}
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._pool_ops import POOL_ALLOCATION
from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module


def main():
    run_module(POOL_ALLOCATION)


if __name__ == "__main__":
    main()
