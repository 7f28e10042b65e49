#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pool_event
short_description: Record what only a playbook knows as pool events
version_added: 0.3.0
description:
  - Records events that no life-cycle module can write with its change, in one transaction
    with the counters behind the metrics - a periodic job's outcome (V(job.started), V(job.succeeded),
    V(job.failed)) and a repair by reconcile (V(reconcile.repaired)).
  - The life cycle's own events (claims, steps, activations, releases, rollbacks, gateway status,
    snapshots stored) are written by its modules with the change and cannot be recorded here.
  - Events are announced on the PostgreSQL channel C(demiurge_gateway_events) when committed.
extends_documentation_fragment:
  - demiurge.gateway.controller
  - demiurge.gateway.pool_db
  - demiurge.gateway.attributes
attributes:
  diff_mode:
    support: none
  idempotent:
    support: none
    details: Every run records its events again; an event log is not idempotent by nature.
options:
  events:
    description: The events to record, in order.
    type: list
    elements: dict
    required: true
    suboptions:
      kind:
        description: The event's kind.
        type: str
        required: true
        choices: [job.started, job.succeeded, job.failed, reconcile.repaired]
      step:
        description:
          - For V(job.*) kinds, the job's name (required), for example V(reconcile) or V(data_sync).
          - For V(reconcile.repaired), what was repaired, for example V(dns_restored).
        type: str
      organization:
        description: The organization concerned (its UUID).
        type: str
      allocation_id:
        description: The allocation concerned.
        type: str
      host:
        description: The host concerned.
        type: str
      cause:
        description: The cause of a failure.
        type: str
      run:
        description: The run that records it (an AWX job id, say).
        type: str
      detail:
        description: Anything else, as a dictionary.
        type: dict
seealso:
  - module: demiurge.gateway.pool_event_info
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
- name: Record that the nightly data sync succeeded
  demiurge.gateway.pool_event:
    events:
      - kind: job.succeeded
        step: data_sync
        run: "{{ tower_job_id | default(omit) }}"
"""

RETURN = r"""
recorded:
  description: How many events were recorded (in check mode, would be).
  returned: always
  type: int
  sample: 1
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._pool_events import POOL_EVENT
from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module


def main():
    run_module(POOL_EVENT)


if __name__ == "__main__":
    main()
