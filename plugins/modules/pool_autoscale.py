#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pool_autoscale
short_description: Decide and settle one run of the gateway pool's autoscaler
version_added: 0.4.0
description:
  - The two ends of one run of the autoscaler (C(playbooks/autoscale.yml)); between them the playbook
    starts and stops gateways on their hosts with the role C(demiurge.gateway.gateway_standin).
  - O(phase=decide) takes the scaler's lease for O(run) (single flight). When another run holds it, it
    returns RV(acquired=false) and does nothing. Otherwise it counts the ready gateways plus those
    still starting toward C(ready_floor) and decides, with the settings of
    M(demiurge.gateway.pool_settings) - below the floor, create in steps of C(scale_step), never past
    C(max_total) or a host's capacity, each on the host with the most free room; above it, retire
    gateways ready and idle for C(idle_seconds), oldest first, down to the floor; nothing during a
    cooldown or while the circuit breaker is open. Gateways to create are registered as
    C(starting); gateways to retire go from C(ready) to C(retiring) in the transaction that checks
    they are still ready, so no claim can get them. Gateways a dead run was starting or retiring
    are returned to be stopped. The decision and its inputs are recorded as event C(autoscale.decision).
  - O(phase=finish) settles the run - the rows of gateways stopped while starting (failed
    creations, leftovers) are deleted, gateways stopped while retiring are retired, creations that
    did not end ready count toward the breaker (event C(autoscale.breaker_opened) when it opens) -
    and gives the lease back.
  - In check mode the decision is computed in a transaction that is rolled back.
extends_documentation_fragment:
  - demiurge.gateway.controller
  - demiurge.gateway.pool_db
  - demiurge.gateway.attributes
attributes:
  diff_mode:
    support: none
  idempotent:
    support: none
    details: Each call is one step of a run; a decision is made again from the pool as it is then.
options:
  phase:
    description: Which end of the run.
    type: str
    required: true
    choices: [decide, finish]
  run:
    description: The run's unique id (the playbook uses the job id or a fresh UUID); the lease holder.
    type: str
    required: true
  hosts:
    description:
      - The gateway hosts new gateways may be placed on (O(phase=decide)). Gateway C(<prefix>NNN)
        listens on C(listen):(C(port_base) + NNN).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Inventory name of the host.
        type: str
        required: true
      prefix:
        description: Gateway name prefix of the host (its C(gateway_standin_name_prefix)).
        type: str
        required: true
      listen:
        description: Address its gateways listen on.
        type: str
        required: true
      port_base:
        description: Port base of its gateways.
        type: int
        required: true
      capacity:
        description: Gateways it runs at most; default the setting C(host_capacity).
        type: int
  scale:
    description:
      - With V(false), only the leftovers of dead runs are returned for cleanup (reconcile); when
        there are none, the run does not take the lease (RV(acquired=false)) and records nothing.
    type: bool
    default: true
  stopped:
    description: Gateways the run stopped on their hosts (O(phase=finish)).
    type: list
    elements: str
    default: []
  lease_seconds:
    description: The longest one run may take; another run may act once it has passed.
    type: int
    default: 300
  trigger:
    description:
      - What started the run (V(schedule), V(pool_event), V(alert), ...), recorded with the decision.
    type: str
    default: manual
notes:
  - The lease, the cooldowns and the breaker live in table C(autoscaler_state) of the pool database.
seealso:
  - module: demiurge.gateway.pool_settings
  - module: demiurge.gateway.pool_event_info
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
- name: Decide
  demiurge.gateway.pool_autoscale:
    phase: decide
    run: "{{ tower_job_id | default(lookup('ansible.builtin.password', '/dev/null chars=ascii_lowercase,digits length=12')) }}"
    hosts:
      - {name: gw-host-1, prefix: gw-host-1-gw-, listen: 10.0.0.21, port_base: 16500}
  register: scaler

- name: Settle the run after starting and stopping the gateways
  demiurge.gateway.pool_autoscale:
    phase: finish
    run: "{{ scaler.decision.run | default(omit) }}"
    stopped: []
"""

RETURN = r"""
acquired:
  description:
    - Whether this run holds the scaler (O(phase=decide)); V(false) when another run does, or when
      O(scale=false) finds nothing to clean up.
  returned: phase is decide
  type: bool
decision:
  description:
    - The decision - C(action) (V(create), V(retire), V(none) or V(breaker_open)), C(reason),
      C(inputs) (ready, starting, total, ready_floor, max_total, scale_step), C(create) and C(retire).
  returned: phase is decide and acquired
  type: dict
  sample: {"action": "create", "reason": "1 ready and 0 starting, below the floor of 2: create 3",
           "inputs": {"ready": 1, "starting": 0, "total": 4, "ready_floor": 2, "max_total": 20, "scale_step": 3}}
create:
  description: Gateways registered as starting, to start on their host.
  returned: phase is decide
  type: list
  elements: dict
  sample: [{"name": "gw-005", "host": "localhost", "port": 15505, "api_url": "http://127.0.0.1:15505",
            "nginx_upstream": "127.0.0.1:15505"}]
retire:
  description: Gateways moved to retiring, to stop on their host.
  returned: phase is decide
  type: list
  elements: str
leftovers:
  description: Gateways a dead run was starting or retiring, to stop on their host.
  returned: phase is decide
  type: list
  elements: dict
hosts:
  description: Per host, the gateways to start (C(start)) and to stop (C(stop)).
  returned: phase is decide
  type: dict
  sample: {"localhost": {"start": ["gw-005"], "stop": []}}
created:
  description: Gateways of the run's decision now ready.
  returned: phase is finish
  type: list
  elements: str
start_failed:
  description: Gateways of the run's decision that did not become ready.
  returned: phase is finish
  type: list
  elements: str
deleted:
  description: Rows of stopped gateways that never became ready, deleted.
  returned: phase is finish
  type: list
  elements: str
retired:
  description: Gateways retired.
  returned: phase is finish
  type: list
  elements: str
breaker_opened:
  description: Whether this run's failures opened the circuit breaker.
  returned: phase is finish
  type: bool
consecutive_failures:
  description: Failed creations since the last successful one.
  returned: phase is finish
  type: int
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._autoscale import POOL_AUTOSCALE
from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module


def main():
    run_module(POOL_AUTOSCALE)


if __name__ == "__main__":
    main()
