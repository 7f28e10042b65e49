#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pool_allocation
short_description: Allocate a gateway to an organization, activate, release or repair it
version_added: 0.1.0
description:
  - Every allocation in progress has a lease and a lease holder, the run that may act on it. The
    holder id is O(lease_holder), or a new one that the call returns as RV(lease_holder).
  - V(present) claims a ready gateway for O(organization) with C(proc_organizations_start_gateway);
    this run becomes the lease holder and RV(created) is true. Concurrent calls never hand one
    gateway to two organizations, nor two gateways to one organization. An organization whose
    allocation is already active gets it back (not changed). When another run is allocating for the
    organization, this call waits up to O(wait_seconds) and returns that run's active allocation
    (RV(created) false, as there is nothing to do and nothing to undo), or fails naming that run and
    its lease. An organization whose gateway is being released fails naming the release's run.
  - V(active) marks the allocation active and ends its lease; only its lease holder may. In check
    mode, a claim that the same check-mode run predicted (O(allocation_id), or any organization of
    O(organizations)) is predicted active.
  - V(releasing) makes this run the holder of a release. A release whose run died (its lease
    expired) is taken over and resumed; one another live run holds is waited for like an allocation.
  - V(leased) takes over the lease of an allocation or release whose run died, for repair
    (RV(held) says whether this run holds it now).
  - V(unleased) gives up the lease O(lease_holder) holds, for a run that stops without finishing,
    so that the next run or the reconcile playbook takes over at once.
  - V(absent) ends the allocation (C(proc_organizations_gateways_stop)) and, in the same transaction,
    sets its gateway to O(gateway_status). Only the lease holder may. An organization without a
    gateway is a no-op.
  - Fails with a clean "pool exhausted" error when no ready gateway exists.
  - Check mode runs the transaction and rolls it back, so it reports the gateway that would be claimed.
extends_documentation_fragment:
  - demiurge.gateway.controller
  - demiurge.gateway.pool_db
  - demiurge.gateway.attributes
options:
  organization:
    description:
      - Organization UUID, in any case; nothing else (no surrounding white space).
      - Exactly one of O(organization) and O(organizations) is required.
    type: str
  organizations:
    description:
      - Many organizations at once, for V(present) and V(active) only. Each is claimed (or
        activated) in its own transaction, all under one lease holder, so one that fails fails
        alone; the task then fails naming each organization and its cause
        (RV(failed_organizations)). An organization listed twice is claimed once.
    type: list
    elements: str
  state:
    description: Wanted state of the organization's allocation.
    type: str
    choices: [present, active, releasing, leased, unleased, absent]
    default: present
  lease_seconds:
    description: Lease of an allocation or release in progress, from now.
    type: int
    default: 600
  lease_holder:
    description: This run's lease holder id; a new one is made when omitted. Required for V(unleased).
    type: str
  allocation_id:
    description: The allocation this run claimed, for V(active) in check mode.
    type: str
  wait_seconds:
    description: How long to wait for another run that holds the organization's lease.
    type: float
    default: 60
  reason:
    description: Why the allocation ends, for V(absent).
    type: str
    choices: [released, failed]
    default: released
  gateway_status:
    description:
      - What the gateway becomes when the allocation ends, for V(absent). V(ready) only after it was
        scrubbed (M(demiurge.gateway.gateway_recycle)); V(resetting) leaves it out of the pool.
    type: str
    choices: [resetting, ready, quarantined]
    default: resetting
  gateway_reason:
    description: Why the gateway is quarantined; required with O(gateway_status=quarantined).
    type: str
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
- name: Claim a gateway for an organization
  demiurge.gateway.pool_allocation:
    organization: 0b5e9b7c-1a2b-4c3d-8e9f-001122334455
  register: claim
  delegate_to: localhost

- name: Claim a gateway for each of many organizations, under one lease holder
  demiurge.gateway.pool_allocation:
    organizations:
      - 0b5e9b7c-1a2b-4c3d-8e9f-001122334455
      - 7c1d2e3f-4a5b-4c6d-8e7f-8899aabbccdd
  register: claims
  # Each organization that was not claimed is in claims.failed_organizations; the others go on.
  failed_when: false
  delegate_to: localhost

- name: End the allocation once the gateway was recycled
  demiurge.gateway.pool_allocation:
    organization: 0b5e9b7c-1a2b-4c3d-8e9f-001122334455
    state: absent
    lease_holder: "{{ claim.lease_holder }}"
    gateway_status: "{{ 'ready' if recycled.verified else 'quarantined' }}"
    gateway_reason: "{{ omit if recycled.verified else recycled.reason }}"
  delegate_to: localhost
"""

RETURN = r"""
allocations:
  description:
    - With O(organizations), the allocation of each organization claimed or activated (as
      RV(allocation)), by canonical UUID.
  returned: with O(organizations)
  type: dict
  sample: {"0b5e9b7c-1a2b-4c3d-8e9f-001122334455": {"allocation_id": "5d0f6c1e-3b7a-4e51-9a55-0e6f1c2d3b4a",
           "organization": "0b5e9b7c-1a2b-4c3d-8e9f-001122334455", "status": "allocating", "gateway_name": "gw-001"}}
created_organizations:
  description: With O(organizations), the organizations this call claimed a new gateway for (see RV(created)).
  returned: with O(organizations) and O(state=present)
  type: list
  elements: str
  sample: ["0b5e9b7c-1a2b-4c3d-8e9f-001122334455"]
failed_organizations:
  description: With O(organizations), each organization that was not claimed (or activated), with the cause.
  returned: with O(organizations)
  type: dict
  sample: {"7c1d2e3f-4a5b-4c6d-8e7f-8899aabbccdd": "Pool exhausted on 127.0.0.1:15432/demiurge: no ready gateway is available"}
unknown_organizations:
  description:
    - The organizations of RV(failed_organizations) that may have been claimed (or activated) all the
      same (a commit whose connection was lost); reconcile.yml settles them once their lease expires.
  returned: with O(organizations)
  type: list
  elements: str
  sample: []
created:
  description: Whether this call claimed a new gateway (false when the organization already held one).
  returned: for O(state=present) with O(organization)
  type: bool
  sample: true
held:
  description: Whether this run holds the allocation's lease now.
  returned: for O(state=releasing) and O(state=leased)
  type: bool
  sample: true
lease_holder:
  description: This run's lease holder id; pass it to the later steps.
  returned: always
  type: str
  sample: 7f1d5a0e-9f1e-4c55-8d0e-2b4c1a9e3f10
allocation:
  description: The allocation with its gateway and journaled steps; null when there is none.
  returned: unless O(organizations) is given
  type: dict
  sample: {"allocation_id": "5d0f6c1e-3b7a-4e51-9a55-0e6f1c2d3b4a", "organization": "0b5e9b7c-1a2b-4c3d-8e9f-001122334455",
           "status": "allocating", "lease_holder": "7f1d5a0e-9f1e-4c55-8d0e-2b4c1a9e3f10", "gateway_name": "gw-001",
           "api_url": "http://127.0.0.1:21001", "nginx_upstream": "127.0.0.1:21001", "steps": []}
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._pool_ops import POOL_ALLOCATION
from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module


def main():
    run_module(POOL_ALLOCATION)


if __name__ == "__main__":
    main()
