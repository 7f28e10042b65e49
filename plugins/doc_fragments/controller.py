# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Modules with an action plugin of the same name (plugin_utils/_local_action.py).
    DOCUMENTATION = r"""
options: {}
notes:
  - When the task runs on the controller over the local connection, without become or async, the module runs
    in the controller process itself (no module transfer, no new interpreter); elsewhere it runs on the target
    as an ordinary module.
"""
