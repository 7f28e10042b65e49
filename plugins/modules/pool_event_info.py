#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pool_event_info
short_description: Read the gateway pool's life-cycle events
version_added: 0.3.0
description:
  - Returns life-cycle events (gateway registered, ready, scrubbed, quarantined, retired; allocation
    claimed, refused, activated, releasing, released, rolled back; each journaled step started, done,
    failed, unknown or undone; leases taken over or given up; reconcile repairs; periodic jobs' outcomes;
    snapshots stored), oldest first, filtered by organization, gateway, allocation, kind and time.
  - At most O(limit) events per call, never more than 1000; page on with O(after_id) set to the
    returned RV(next_after_id).
extends_documentation_fragment:
  - demiurge.gateway.controller
  - demiurge.gateway.pool_db
  - demiurge.gateway.attributes.INFO_MODULE
options:
  organization:
    description: Only events of this organization (its UUID).
    type: str
  gateway:
    description: Only events of this gateway (its name or id).
    type: str
  allocation_id:
    description: Only events of this allocation.
    type: str
  kinds:
    description:
      - Only events of these kinds, for example V(allocation.rolled_back).
      - A kind ending in a dot selects its family, for example V(step.) for every step event.
    type: list
    elements: str
  since:
    description: Only events at or after this ISO 8601 time (UTC when it has no offset).
    type: str
  until:
    description: Only events before this ISO 8601 time.
    type: str
  after_id:
    description: Only events with a larger id; the previous page's RV(next_after_id).
    type: int
    default: 0
  limit:
    description: Page size, from 1 to 1000.
    type: int
    default: 100
seealso:
  - module: demiurge.gateway.pool_event
  - module: demiurge.gateway.pool_event_prune
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
- name: Read the last day's rollbacks
  demiurge.gateway.pool_event_info:
    kinds: [allocation.rolled_back]
    since: "{{ '%Y-%m-%dT%H:%M:%S+00:00' | strftime(now(utc=true).timestamp() - 86400, utc=true) }}"
  register: rollbacks

- name: Page through one organization's history
  demiurge.gateway.pool_event_info:
    organization: 0b5e9b7c-1a2b-4c3d-8e9f-001122334455
    after_id: "{{ previous.next_after_id | default(0) }}"
    limit: 500
"""

RETURN = r"""
events:
  description: The events, oldest first.
  returned: always
  type: list
  elements: dict
  sample: [{"id": 812, "at": "2026-11-26T10:00:01.120000+00:00", "kind": "allocation.rolled_back",
            "organization_id": "0b5e9b7c-1a2b-4c3d-8e9f-001122334455", "gateway_id": "9c1f0e2a-5b6c-4d7e-8f90-112233445566",
            "allocation_id": "5d0f6c1e-3b7a-4e51-9a55-0e6f1c2d3b4a", "step": "route", "host": null,
            "cause": "nginx -t refused the configuration", "run": "7f1d5a0e-9f1e-4c55-8d0e-2b4c1a9e3f10",
            "duration_seconds": 1.8, "detail": {"operation": "allocate"}}]
next_after_id:
  description: The O(after_id) of the next page; null when this page is the last.
  returned: always
  type: int
  sample: 812
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._pool_events import POOL_EVENT_INFO
from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module


def main():
    run_module(POOL_EVENT_INFO)


if __name__ == "__main__":
    main()
