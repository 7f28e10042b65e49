# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs demiurge.gateway.gateway_snapshot in-process when the task runs on the controller. On
another host, the pool's part (is the allocation still live? record the stored snapshot) stays
here, so managed hosts never get the pool's credentials."""

from __future__ import annotations

from ansible_collections.demiurge.gateway.plugins.module_utils._data_sync import (
    GATEWAY_SNAPSHOT,
    record_stored,
    require_live_allocation,
)
from ansible_collections.demiurge.gateway.plugins.module_utils._dns_names import organization_id
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import GatewayError
from ansible_collections.demiurge.gateway.plugins.module_utils._module import failure
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_db import pool_db_argument_spec
from ansible_collections.demiurge.gateway.plugins.plugin_utils._local_action import LocalFirstAction


class ActionModule(LocalFirstAction):
    DEFINITION = GATEWAY_SNAPSHOT

    def _run_on_host(self, module_args, task_vars):
        params = self._validated().validated_parameters
        host_args = {key: value for key, value in module_args.items() if key not in pool_db_argument_spec()}
        host_args["verify_allocation"] = False
        if not params["verify_allocation"]:
            return super()._run_on_host(host_args, task_vars)
        organization = organization_id(params["organization"])
        warnings = []
        try:
            require_live_allocation(params, organization, params["allocation_id"])
        except GatewayError as exc:
            return failure(exc)
        result = super()._run_on_host(host_args, task_vars)
        # Recorded once the snapshot is in storage: by the task that stores it, not the one that bundles it.
        if result.get("changed") and not result.get("failed") and "pruned" in result and not self._task.check_mode:
            record_stored(params, organization, result["snapshot"], result["pruned"], warnings.append)
            result.setdefault("warnings", []).extend(warnings)
        return result
