# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Where an organization's snapshots live; matches _storage_spec() in module_utils/_data_sync.py.
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

    # Modules that also read or write the gateway's own data.
    DATA_DIR = r"""
options:
  data_dir:
    description: The gateway's data directory (C(data_dir) in the gateway's pool metadata).
    type: path
    required: true
"""
