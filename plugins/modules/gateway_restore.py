#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: gateway_restore
short_description: Restore an organization's latest (or a chosen) snapshot into a gateway, on one host or from another
version_added: 0.1.0
description:
  - Copies the snapshot into a staging directory beside O(data_dir) while checking every file's
    SHA-256 and size against the manifest (and the manifest's own checksum); only when all match is
    the staging directory swapped with O(data_dir) in one rename. A corrupt or truncated snapshot is
    refused with an error naming the file, and the gateway's data stays as it was.
  - Restores each file's recorded mode (snapshots from before modes were recorded restore as 0600).
  - The newest snapshot is restored, or refused when its manifest is damaged. An older snapshot is
    never taken silently, because it would lose what the newest one added; restore one on purpose
    with O(snapshot).
  - An organization without snapshots is not an error (a first allocation); nothing changes.
  - When O(data_dir) already holds exactly the snapshot, nothing changes.
  - Between hosts, it runs twice. On the storage host (O(storage_dir) and O(bundle)) it bundles the
    chosen snapshot, checking every file while it reads it (that task changes nothing); on the
    gateway's host (O(bundle) and O(data_dir)) it restores from the bundle with the same checks and
    the same swap.
extends_documentation_fragment:
  - demiurge.gateway.controller
  - demiurge.gateway.gateway_data.MOVE
  - demiurge.gateway.journal
  - demiurge.gateway.attributes
options:
  snapshot:
    description: Snapshot id to restore; the newest one when omitted.
    type: str
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
- name: Restore the organization's data before the handshake
  demiurge.gateway.gateway_restore:
    data_dir: "{{ allocation.gateway_metadata.data_dir }}"
    storage_dir: "{{ 'dev-001' | demiurge.gateway.state_path('org-data') }}"
    organization: "{{ organization_id }}"

# Between hosts: central storage is on storage1, the gateway runs on gwhost2.
- name: Bundle the newest snapshot on the storage host and bring it to the controller
  demiurge.gateway.gateway_restore:
    storage_dir: /srv/demiurge/org-data
    bundle: "{{ organization_id }}.tar"
    organization: "{{ organization_id }}"
  delegate_to: storage1
  register: bundled

- name: Restore it into the gateway
  demiurge.gateway.gateway_restore:
    bundle: "{{ bundled.bundle }}"
    data_dir: "{{ allocation.gateway_metadata.data_dir }}"
    organization: "{{ organization_id }}"
  delegate_to: gwhost2
  when: bundled.bundle is not none
"""

RETURN = r"""
restored:
  description: Summary of the restored snapshot; null when the organization has none.
  returned: always
  type: dict
  sample: {"id": "20261125T182000.123456Z", "file_count": 101, "total_size": 52428800, "intact": true}
bundle:
  description: The snapshot bundled on the storage host, now at O(bundle) on the controller; null when there is none.
  returned: when bundling on the storage host
  type: str
  sample: /root/.ansible/tmp/ansible-local-4242xyz/0b5e9b7c-1a2b-4c3d-8e9f-001122334455.tar
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._data_sync import GATEWAY_RESTORE
from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module


def main():
    run_module(GATEWAY_RESTORE)


if __name__ == "__main__":
    main()
