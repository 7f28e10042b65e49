# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter demiurge.gateway.state_path: the roles' door to the one path helper."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.demiurge.gateway.plugins.module_utils._errors import InvalidInputError
from ansible_collections.demiurge.gateway.plugins.module_utils._paths import state_path


def _state_path(env_name, *parts, base=None):
    try:
        return state_path(env_name, *parts, base=base)
    except InvalidInputError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    def filters(self):
        return {"state_path": _state_path}
