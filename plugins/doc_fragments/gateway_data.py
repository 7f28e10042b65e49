# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Where an organization's snapshots live (gateway_snapshot_info).
    DOCUMENTATION = r"""
options:
  storage_dir:
    description: Root of central storage; each organization has a directory below it.
    type: path
    required: true
  organization:
    description: Organization UUID.
    type: str
    required: true
"""

    # Modules that move an organization's data between a gateway and storage; matches
    # _storage_spec() in module_utils/_data_sync.py.
    MOVE = r"""
options:
  organization:
    description: Organization UUID.
    type: str
    required: true
  data_dir:
    description:
      - The gateway's data directory (C(data_dir) in the gateway's pool metadata), on the host the
        task runs on.
    type: path
  storage_dir:
    description:
      - Root of central storage on the host the task runs on; each organization has a directory
        below it.
    type: path
  bundle:
    description:
      - A snapshot in transit between a gateway's host and the storage host, as one file B(on the
        controller) (an uncompressed tar of the files and the manifest, 0600).
      - With O(data_dir) or O(storage_dir), whichever is the source here, the task writes the bundle
        on its host and brings it to this path over the host's connection. With the other one, the
        task takes the bundle from this path to its host and reads it there. Either way the file
        moves through Ansible's connection (streamed, never held in memory) and the receiving side
        keeps nothing unless the manifest is intact, names O(organization), and matches every file.
      - A relative path names a file in this run's private temporary directory on the controller
        (0700, removed when ansible-playbook exits); such a bundle is also deleted as soon as the task
        that reads it has run, so an organization's data does not stay on the controller.
      - Give exactly two of O(data_dir), O(storage_dir) and O(bundle).
    type: path
  remove_bundle:
    description:
      - Delete the bundle file once this task has read it, whatever the outcome.
      - The action plugin sets it for the copy it puts on the host (in the host's C(remote_tmp)); a
        task never needs to.
    type: bool
    default: false
notes:
  - Between hosts, run the task that writes the bundle on the source host and the task that reads it
    on the other (C(delegate_to)), with a relative O(bundle) unless you want to keep the file.
"""
