#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: gateway_snapshot
short_description: Snapshot a gateway's data for an organization into central storage
version_added: 0.1.0
description:
  - Copies the gateway's data directory (per-project Yjs state under C(projects/), the state file
    with permissions, OAuth clients, authorization codes and tokens, container tokens) into
    C(<storage_dir>/<organization>/<snapshot id>/) with a manifest holding a SHA-256 per file and
    a checksum of the manifest itself.
  - Written under a temporary name, every file fsynced, then renamed into place; a push that dies
    midway leaves the previous snapshots untouched. Files are 0600 in 0700 directories; no file
    content appears in the result.
  - Refuses a snapshot that would drop projects present in the previous one (a gateway that
    unloaded idle projects must not erase them) unless O(allow_shrink=true).
  - With O(pool_db), refuses when O(allocation_id) is no longer the organization's live allocation.
  - Keeps the newest O(keep) intact snapshots; the new one always counts, so a good one always stays.
  - When the data equals the latest snapshot, nothing is written (not changed).
extends_documentation_fragment:
  - demiurge.gateway.attributes
attributes:
  idempotent:
    details: A second push of unchanged data writes nothing.
options:
  data_dir:
    description: The gateway's data directory.
    type: path
    required: true
  storage_dir:
    description: Root of central storage (one directory per organization below it).
    type: path
    required: true
  organization:
    description: Organization UUID.
    type: str
    required: true
  allocation_id:
    description: Allocation whose gateway holds the data; recorded in the manifest.
    type: str
    required: true
  keep:
    description: Intact snapshots to keep per organization.
    type: int
    default: 5
  allow_shrink:
    description: Accept a snapshot that has fewer projects than the previous one.
    type: bool
    default: false
  pool_db:
    description: Pool database connection options (as M(demiurge.gateway.pool_allocation)); when given,
      the push is refused unless O(allocation_id) is the organization's live allocation.
    type: dict
    suboptions:
      login_host:
        description: Pool database host. Falls back to E(PGHOST).
        type: str
        default: 127.0.0.1
      login_port:
        description: Pool database port. Falls back to E(PGPORT).
        type: int
        default: 5432
      login_user:
        description: Pool database role. Falls back to E(PGUSER).
        type: str
        default: demiurge
      login_password:
        description: Password of O(pool_db.login_user). Falls back to E(PGPASSWORD).
        type: str
      login_db:
        description: Pool database. Falls back to E(PGDATABASE).
        type: str
        default: demiurge
      connect_timeout:
        description: Seconds to wait for a connection.
        type: int
        default: 10
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
"""

RETURN = r"""
snapshot:
  description: Summary of the new (or unchanged latest) snapshot.
  returned: always
  type: dict
  sample: {"id": "20261125T182000.123456Z", "allocation_id": "5d0f6c1e-3b7a-4e51-9a55-0e6f1c2d3b4a",
           "file_count": 101, "total_size": 52428800, "checksum": "9f2c...", "projects": ["p-001"], "intact": true}
pruned:
  description: Ids of snapshots removed to keep O(keep).
  returned: always
  type: list
  elements: str
  sample: ["20261120T101500.000001Z"]
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._data_sync import GATEWAY_SNAPSHOT
from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module


def main():
    run_module(GATEWAY_SNAPSHOT)


if __name__ == "__main__":
    main()
