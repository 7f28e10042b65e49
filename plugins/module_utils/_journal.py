# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

The `journal` option of step modules. The module never uses it: the action plugin
of the same name takes it out of the arguments on the controller and writes the
step's records there (plugin_utils/_journal.py), so a managed host never needs the
pool database or its password.
"""

from __future__ import annotations

from ansible_collections.demiurge.gateway.plugins.module_utils._pool_db import pool_db_argument_spec


def journal_argument_spec():
    options = pool_db_argument_spec()
    options.update(
        allocation_id={"type": "str"},
        allocations={"type": "dict"},
        step={"type": "str", "required": True},
        lease_seconds={"type": "int", "default": 600},
        lease_holder={"type": "str"},
    )
    return {"journal": {"type": "dict", "options": options, "mutually_exclusive": [["allocation_id", "allocations"]],
                        "required_one_of": [["allocation_id", "allocations"]]}}
