#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: gateway_snapshot_info
short_description: List an organization's snapshots in central storage
version_added: 0.1.0
description:
  - Lists snapshots newest first with time, size, file count, checksum, projects, the allocation
    that made them, and whether the manifest is intact.
extends_documentation_fragment:
  - demiurge.gateway.controller
  - demiurge.gateway.gateway_data
  - demiurge.gateway.attributes.INFO_MODULE
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
- name: List snapshots
  demiurge.gateway.gateway_snapshot_info:
    storage_dir: "{{ 'dev-001' | demiurge.gateway.state_path('org-data') }}"
    organization: 0b5e9b7c-1a2b-4c3d-8e9f-001122334455
  register: snapshots
"""

RETURN = r"""
snapshots:
  description: Snapshot summaries, newest first.
  returned: always
  type: list
  elements: dict
  sample: [{"id": "20261125T182000.123456Z", "created_at": "2026-11-25T18:20:00+00:00", "allocation_id": "5d0f6c1e-3b7a-4e51-9a55-0e6f1c2d3b4a",
            "file_count": 101, "total_size": 52428800, "checksum": "9f2c...", "intact": true}]
latest:
  description:
    - The newest intact snapshot's whole manifest, with each file's SHA-256, size and mode; null when
      there is none. M(demiurge.gateway.gateway_snapshot) takes it as O(demiurge.gateway.gateway_snapshot#module:latest).
  returned: always
  type: dict
  sample: {"id": "20261125T182000.123456Z", "files": {"state.json": {"sha256": "3b1f...", "size": 412, "mode": "0600"}},
           "projects": ["p-001"], "checksum": "9f2c...", "intact": true}
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._data_sync import GATEWAY_SNAPSHOT_INFO
from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module


def main():
    run_module(GATEWAY_SNAPSHOT_INFO)


if __name__ == "__main__":
    main()
