# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs demiurge.gateway.gateway_snapshot in-process when the task runs on the controller. On
another host, the pool's part (is the allocation still live? record the stored snapshot) stays
here, so managed hosts never get the pool's credentials."""

from __future__ import annotations

from ansible_collections.demiurge.gateway.plugins.module_utils._data_sync import (
    GATEWAY_SNAPSHOT,
    batch_allocations,
    batch_result,
    ended_during_push,
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
        if params.get("allocations") is not None or params.get("live_allocations"):
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
        """The pool's part here (which allocations, their events), the files' part on the host."""
        try:
            allocations, refused, elsewhere = batch_allocations(params)
        except GatewayError as exc:
            return failure(exc)
        for key in ("live_allocations", "host"):
            host_args.pop(key, None)
        host_args["allocations"] = allocations
        result = super()._run_on_host(host_args, task_vars) if allocations else {"changed": False}
        if "changed_organizations" not in result and result.get("failed"):
            return result  # the module did not run (the host, the interpreter)
        pushed = {o: {"snapshot": result["snapshots"][o], "pruned": result["pruned"][o]} for o in result.get("changed_organizations", ())}
        warnings = list(result.get("warnings", ()))
        failed = dict(result.get("failed_organizations", {}), **refused)
        if not self._task.check_mode:
            ids = dict((organization_id(item["organization"]), item["allocation_id"]) for item in allocations)
            try:
                ended = ended_during_push(params, [(o, ids[o]) for o in pushed])
            except GatewayError as exc:
                return failure(exc)
            for organization in ended:
                failed[organization] = (
                    "The allocation ended while its data was copied, so snapshot %s may hold another organization's data: "
                    "delete %s/%s/%s on %s before the organization's next allocation (the release pushed its own)"
                    % (pushed[organization]["snapshot"]["id"], params["storage_dir"], organization,
                       pushed[organization]["snapshot"]["id"], self._task.delegate_to or task_vars.get("inventory_hostname")))
                del pushed[organization]
            record_stored(params, [(o, ids[o], pushed[o]) for o in sorted(pushed)], warnings.append)
        try:
            merged = batch_result(pushed, result.get("unchanged", 0), failed,
                                  **({} if elsewhere is None else {"elsewhere": elsewhere}))
        except GatewayError as exc:
            merged = failure(exc)
        merged["diff"] = result.get("diff", merged.get("diff"))
        if warnings:
            merged["warnings"] = warnings
        return merged
