#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: gateway_snapshot
short_description: Snapshot a gateway's data for an organization into central storage, on one host or between two
version_added: 0.1.0
description:
  - Copies the gateway's data directory (per-project Yjs state under C(projects/), the state file
    with permissions, OAuth clients, authorization codes and tokens, container tokens) into
    C(<storage_dir>/<organization>/<snapshot id>/) with a manifest holding a SHA-256 per file and
    a checksum of the manifest itself. Each file's mode is recorded and restored.
  - Written under a temporary name, every file fsynced, then renamed into place; a push that dies
    midway leaves the previous snapshots untouched. Files are 0600 in 0700 directories; no file
    content appears in the result.
  - Refuses a snapshot that would drop projects present in the previous one (a gateway that
    unloaded idle projects must not erase them) unless O(allow_shrink=true).
  - Refuses when O(allocation_id) is no longer the organization's live allocation (O(verify_allocation)).
  - Keeps the newest O(keep) intact snapshots; the new one always counts, so a good one always stays.
  - When the data equals the latest snapshot, nothing is written (not changed). Whenever it finds or
    makes a snapshot equal to the data, it leaves a note beside the data directory
    (C(.<name>.snapshot-state.json)) with the organization, the snapshot id and what C(lstat) says of every
    entry. Later pushes trust the note, and read no file, while the storage's newest intact snapshot
    is still that id and no entry looks different (every write changes an entry's ctime); entries
    changed less than two seconds before the note are always read. So a periodic push costs what
    changed, not how much data there is.
  - With O(allocations), it pushes many gateways' data on the storage host in one task (one pool
    query and one transaction for their events); a failure (a full disk, a refused shrink, a stale
    allocation) fails only its organization, the others are pushed, and the task fails at the end
    naming each (RV(failed_organizations)).
  - With O(live_allocations=true), the allocations are the pool's active ones whose gateway's data is
    on O(host), read at the start; the others come back in RV(elsewhere), for the tasks that bundle
    their data on their own hosts (M(demiurge.gateway.data_sync) does so).
  - A new snapshot is recorded as a C(snapshot.stored) event (its id, size and the ids pruned) when
    O(verify_allocation=true); the snapshot metrics read them. The event is written after the snapshot
    is durable, so a database failure at that point is a warning and the snapshot stays.
  - Between hosts, it runs twice. On the gateway's host (O(data_dir) and O(bundle)) it bundles the
    data, unless it equals O(latest); on the storage host (O(bundle) and O(storage_dir)) it checks the
    bundle file by file and keeps it as a snapshot, with the same rules as on one host. The pool's
    part (the live allocation, the event) runs on the controller, so managed hosts never get the
    pool's credentials.
extends_documentation_fragment:
  - demiurge.gateway.controller
  - demiurge.gateway.gateway_data.MOVE
  - demiurge.gateway.pool_db
  - demiurge.gateway.journal
  - demiurge.gateway.attributes
attributes:
  idempotent:
    details: A second push of unchanged data writes nothing.
options:
  organization:
    description:
      - Organization whose data this is (a UUID, any case). Required unless O(allocations) or O(live_allocations) is given.
    type: str
    required: false
  allocation_id:
    description:
      - Allocation whose gateway holds the data; recorded in the manifest. Required with O(organization).
    type: str
  live_allocations:
    description:
      - Push every active allocation in the pool whose gateway's pool metadata names O(host) (C(host);
        a gateway without one is on C(localhost)). Requires O(host) and O(storage_dir).
      - A gateway whose metadata names no C(data_dir) fails its organization.
    type: bool
  host:
    description:
      - With O(live_allocations), the inventory name of the host the task runs on, as the gateways'
        pool metadata names hosts.
    type: str
  allocations:
    description:
      - Many gateways' data on the host of O(storage_dir), pushed in one task. Each element names one
        organization's live allocation and its gateway's data directory.
      - Excludes O(organization), O(data_dir), O(bundle), O(latest) and O(live_allocations); requires O(storage_dir).
    type: list
    elements: dict
    suboptions:
      organization:
        description: Organization whose data this is.
        type: str
        required: true
      allocation_id:
        description: Its live allocation.
        type: str
        required: true
      data_dir:
        description: The gateway's data directory.
        type: path
        required: true
  keep:
    description: Intact snapshots to keep per organization.
    type: int
    default: 5
  allow_shrink:
    description: Accept a snapshot that has fewer projects than the previous one.
    type: bool
    default: false
  verify_allocation:
    description:
      - Refuse the push unless O(allocation_id) is the organization's live allocation in the pool
        database (reached with the connection options), so a stale gateway never overwrites newer data.
    type: bool
    default: true
  latest:
    description:
      - When bundling on the gateway's host, the storage's newest intact snapshot, as
        M(demiurge.gateway.gateway_snapshot_info) returns it in RV(demiurge.gateway.gateway_snapshot_info#module:latest).
        Data equal to it is not bundled (RV(bundle) is null), and a bundle that would drop its
        projects is refused unless O(allow_shrink=true). The storage host checks both again.
    type: dict
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
- name: Push the organization's data before the gateway is reset
  demiurge.gateway.gateway_snapshot:
    data_dir: "{{ allocation.gateway_metadata.data_dir }}"
    storage_dir: "{{ 'dev-001' | demiurge.gateway.state_path('org-data') }}"
    organization: "{{ organization_id }}"
    allocation_id: "{{ allocation.allocation_id }}"

# Between hosts: the gateway runs on gwhost1, central storage is on storage1.
- name: Read the newest snapshot on the storage host
  demiurge.gateway.gateway_snapshot_info:
    storage_dir: /srv/demiurge/org-data
    organization: "{{ organization_id }}"
  delegate_to: storage1
  register: stored

- name: Bundle the data on the gateway's host and bring it to the controller
  demiurge.gateway.gateway_snapshot:
    data_dir: "{{ allocation.gateway_metadata.data_dir }}"
    bundle: "{{ organization_id }}.tar"
    latest: "{{ stored.latest }}"
    organization: "{{ organization_id }}"
    allocation_id: "{{ allocation.allocation_id }}"
  delegate_to: gwhost1
  register: bundled

- name: Keep it in central storage
  demiurge.gateway.gateway_snapshot:
    bundle: "{{ bundled.bundle }}"
    storage_dir: /srv/demiurge/org-data
    organization: "{{ organization_id }}"
    allocation_id: "{{ allocation.allocation_id }}"
  delegate_to: storage1
  when: bundled.bundle is not none

- name: Push every live allocation's data on the storage host; only what changed is read
  demiurge.gateway.gateway_snapshot:
    allocations:
      - organization: 0b5e9b7c-1a2b-4c3d-8e9f-001122334455
        allocation_id: 5d0f6c1e-3b7a-4e51-9a55-0e6f1c2d3b4a
        data_dir: /srv/demiurge/gateways/gw-001/data
      - organization: 7c1d2e3f-4a5b-4c6d-8e7f-8899aabbccdd
        allocation_id: 9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d
        data_dir: /srv/demiurge/gateways/gw-002/data
    storage_dir: /srv/demiurge/org-data

- name: Push every active allocation whose gateway is on storage1; the others are listed
  demiurge.gateway.gateway_snapshot:
    live_allocations: true
    host: storage1
    storage_dir: /srv/demiurge/org-data
  delegate_to: storage1
  register: pushed
"""

RETURN = r"""
snapshot:
  description: Summary of the new (or unchanged latest) snapshot.
  returned: with O(organization)
  type: dict
  sample: {"id": "20261125T182000.123456Z", "allocation_id": "5d0f6c1e-3b7a-4e51-9a55-0e6f1c2d3b4a",
           "file_count": 101, "total_size": 52428800, "checksum": "9f2c...", "projects": ["p-001"], "intact": true}
bundle:
  description: The bundle written on the gateway's host, now at O(bundle) on the controller; null when the data equals O(latest).
  returned: when bundling on the gateway's host
  type: str
  sample: /root/.ansible/tmp/ansible-local-4242xyz/0b5e9b7c-1a2b-4c3d-8e9f-001122334455.tar
pruned:
  description:
    - Ids of snapshots removed to keep O(keep); with O(allocations), a dict of such lists by organization
      (the organizations that got a new snapshot).
  returned: when writing into storage
  type: raw
  sample: ["20261120T101500.000001Z"]
snapshots:
  description: With many, each new snapshot by organization, as RV(snapshot).
  returned: with O(allocations) or O(live_allocations)
  type: dict
  sample: {"0b5e9b7c-1a2b-4c3d-8e9f-001122334455": {"id": "20261125T182000.123456Z", "file_count": 101}}
changed_organizations:
  description: With many, the organizations that got a new snapshot.
  returned: with O(allocations) or O(live_allocations)
  type: list
  elements: str
  sample: ["0b5e9b7c-1a2b-4c3d-8e9f-001122334455"]
unchanged:
  description: With many, how many organizations' data equalled their newest snapshot.
  returned: with O(allocations) or O(live_allocations)
  type: int
  sample: 9900
failed_organizations:
  description: With many, each organization whose push failed, with its cause; nothing was written for it.
  returned: with O(allocations) or O(live_allocations)
  type: dict
  sample: {"7c1d2e3f-4a5b-4c6d-8e7f-8899aabbccdd": "Snapshot of organization ... would drop projects ..."}
elsewhere:
  description: With O(live_allocations), the active allocations whose gateway is on another host than O(host).
  returned: with O(live_allocations)
  type: list
  elements: dict
  contains:
    organization:
      description: The organization.
      type: str
    allocation_id:
      description: Its live allocation.
      type: str
    data_dir:
      description: Its gateway's data directory, on RV(elsewhere[].host).
      type: str
    host:
      description: The host its gateway's pool metadata names.
      type: str
  sample: [{"organization": "0b5e9b7c-1a2b-4c3d-8e9f-001122334455", "allocation_id": "5d0f6c1e-3b7a-4e51-9a55-0e6f1c2d3b4a",
            "data_dir": "/srv/demiurge/gateways/gw-001/data", "host": "gwhost1"}]
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._data_sync import GATEWAY_SNAPSHOT
from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module


def main():
    run_module(GATEWAY_SNAPSHOT)


if __name__ == "__main__":
    main()
