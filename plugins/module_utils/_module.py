# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

A module is defined once (argument spec, rules, body) and run two ways: as an
ordinary module on the target (run_module), or in-process on the controller by
the action plugin of the same name (plugin_utils/_local_action.py). The body
never sees AnsibleModule, and GatewayError becomes a failure in one place each.
"""

from __future__ import annotations

import traceback

from ansible_collections.demiurge.gateway.plugins.module_utils._errors import GatewayError


class Call:
    """What a module body gets: parameters, modes, and a way to run commands and warn."""

    def __init__(self, params, check_mode, diff, run_command):
        self.params = params
        self.check_mode = check_mode
        self.diff = diff
        self.run_command = run_command
        self.warnings = []

    def warn(self, message):
        self.warnings.append(message)


class ModuleDef:
    def __init__(self, argument_spec, body, **rules):
        self.argument_spec = argument_spec
        self.body = body
        self.rules = rules

    def module_kwargs(self):
        return dict(argument_spec=self.argument_spec(), supports_check_mode=True, **self.rules)

    def execute(self, call):
        """Run the body; a result dict, or a failure dict for a GatewayError."""
        try:
            result = self.body(call)
        except GatewayError as exc:
            result = {key: value for key, value in exc.details.items() if value is not None}
            result.update(failed=True, msg=str(exc), error=type(exc).__name__, exception=traceback.format_exc())
        if not call.diff:
            result.pop("diff", None)
        if call.warnings:
            result["warnings"] = call.warnings
        result.setdefault("changed", False)
        return result


def run_module(definition):
    """Entry point of a module file: run definition as an ordinary module."""
    from ansible.module_utils.basic import AnsibleModule

    module = AnsibleModule(**definition.module_kwargs())
    result = definition.execute(Call(module.params, module.check_mode, module._diff, module.run_command))
    for warning in result.pop("warnings", ()):
        module.warn(warning)
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)
