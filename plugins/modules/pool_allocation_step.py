#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pool_allocation_step
short_description: Journal one step of an allocation or release
version_added: 0.1.0
description:
  - Records that a step of allocation O(allocation_id) on O(host) V(started), is V(done), was
    V(undone), V(failed) (nothing applied) or has an V(unknown) outcome (it may have been applied),
    with optional detail, and extends the allocation's lease. Only the lease holder may write
    (O(lease_holder)).
  - Step modules journal themselves through their C(journal) option; this module is for steps of
    one's own.
  - The journal lets the reconcile playbook roll back (or forward) a run that was killed.
extends_documentation_fragment:
  - demiurge.gateway.controller
  - demiurge.gateway.pool_db
  - demiurge.gateway.attributes
options:
  allocation_id:
    description: Allocation id, as returned by M(demiurge.gateway.pool_allocation).
    type: str
    required: true
  step:
    description: Step name, for example C(dns), C(route), C(handshake).
    type: str
    required: true
  host:
    description: Host the step ran on; one record per step and host.
    type: str
    default: ""
  step_state:
    description: State of the step.
    type: str
    required: true
    choices: [started, done, undone, failed, unknown]
  detail:
    description: Detail merged into the step's record (what to undo, for example).
    type: dict
  lease_seconds:
    description: New lease of the allocation from now.
    type: int
    default: 600
  lease_holder:
    description: This run's lease holder id, as M(demiurge.gateway.pool_allocation) returned it.
    type: str
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
- name: Journal the DNS step
  demiurge.gateway.pool_allocation_step:
    allocation_id: "{{ claim.allocation.allocation_id }}"
    step: dns
    step_state: started
  delegate_to: localhost
"""

RETURN = r"""
changed:
  description: Whether the journal changed.
  returned: always
  type: bool
  sample: true
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._pool_ops import POOL_ALLOCATION_STEP
from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module


def main():
    run_module(POOL_ALLOCATION_STEP)


if __name__ == "__main__":
    main()
