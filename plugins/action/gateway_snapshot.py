# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs demiurge.gateway.gateway_snapshot in-process when the task runs on the controller. On
another host, the pool's part (is the allocation still live? record the stored snapshot) stays
here, so managed hosts never get the pool's credentials."""

from __future__ import annotations

from ansible_collections.demiurge.gateway.plugins.module_utils._data_sync import (
    GATEWAY_SNAPSHOT,
    batch_result,
    record_stored,
    require_live_allocation,
    require_live_allocations,
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
        if params.get("allocations") is not None:
            return self._run_many_on_host(params, host_args, task_vars)
        organization = organization_id(params["organization"])
        warnings = []
        try:
            require_live_allocation(params, organization, params["allocation_id"])
        except GatewayError as exc:
            return failure(exc)
        result = super()._run_on_host(host_args, task_vars)
        # Recorded once the snapshot is in storage: by the task that stores it, not the one that bundles it.
        if result.get("changed") and not result.get("failed") and "pruned" in result and not self._task.check_mode:
            record_stored(params, [(organization, params["allocation_id"], result)], warnings.append)
            result.setdefault("warnings", []).extend(warnings)
        return result

    def _run_many_on_host(self, params, host_args, task_vars):
        allocations = [(organization_id(item["organization"]), item["allocation_id"]) for item in params["allocations"]]
        try:
            refused = require_live_allocations(params, allocations)
        except GatewayError as exc:
            return failure(exc)
        host_args["allocations"] = [item for item in params["allocations"] if organization_id(item["organization"]) not in refused]
        result = super()._run_on_host(host_args, task_vars) if host_args["allocations"] else {"changed": False}
        if "changed_organizations" not in result and result.get("failed"):
            return result  # the module did not run (the host, the interpreter)
        results = {organization: {"snapshot": snapshot, "pruned": result.get("pruned", {}).get(organization, []),
                                  "changed": organization in result.get("changed_organizations", ())}
                   for organization, snapshot in result.get("snapshots", {}).items()}
        warnings = list(result.get("warnings", ()))
        if not self._task.check_mode:
            record_stored(params, [(o, a, results[o]) for o, a in allocations if o in results and results[o]["changed"]],
                          warnings.append)
        failed = dict(result.get("failed_organizations", {}), **refused)
        try:
            merged = batch_result(params, results, failed)
        except GatewayError as exc:
            merged = failure(exc)
        merged["diff"] = result.get("diff", merged.get("diff"))
        if warnings:
            merged["warnings"] = warnings
        return merged
