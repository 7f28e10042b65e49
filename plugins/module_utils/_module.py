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

import errno
import traceback

from ansible_collections.demiurge.gateway.plugins.module_utils._errors import GatewayError, StorageError


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
    """argument_spec() and rules as AnsibleModule takes them, and the body. bundle_flow(params), for
    modules that move data between hosts, says whether the task writes a bundle file ('out') or
    reads one ('in'), which the action plugin then carries over the host's connection. batch names
    the option of a module's many-organizations form, whose entries the journal records one by one."""

    def __init__(self, argument_spec, body, bundle_flow=None, batch=None, **rules):
        self.argument_spec = argument_spec
        self.body = body
        self.bundle_flow = bundle_flow
        self.batch = batch
        self.rules = rules

    def module_kwargs(self):
        return dict(argument_spec=self.argument_spec(), supports_check_mode=True, **self.rules)

    def execute(self, call):
        """Run the body; a result dict, or a failure dict for a GatewayError or an OSError."""
        try:
            result = self.body(call)
        except (GatewayError, OSError) as exc:
            result = failure(exc)
        if not call.diff:
            result.pop("diff", None)
        if call.warnings:
            result["warnings"] = call.warnings
        result.setdefault("changed", False)
        return result


_OS_HINTS = {
    errno.ENOSPC: "The file system is full: free space on it, then run again",
    errno.EDQUOT: "The disk quota is used up: free space or raise the quota, then run again",
    errno.EROFS: "The file system is read-only: remount it read-write (or replace the failed disk), then run again",
    errno.EACCES: "Permission denied: run the task as a user allowed to write there (become), or fix the ownership",
    errno.EPERM: "Operation not permitted: run the task as a user allowed to write there (become), or fix the ownership",
    errno.EIO: "The device reported an I/O error: check the disk before running again",
}


def os_error(exc):
    """A StorageError saying where, what and what to do, for an operating-system error."""
    where = exc.filename or "the file system"
    return StorageError("Could not write %s: %s (errno %s)" % (where, exc.strerror or exc, exc.errno),
                        hint=_OS_HINTS.get(exc.errno, "Fix the cause named by the operating system, then run again"),
                        errno=exc.errno, path=exc.filename)


def failure(exc):
    """The result dict of a failed call, from a GatewayError or an OSError."""
    if isinstance(exc, OSError):
        exc = os_error(exc)
    result = {key: value for key, value in exc.details.items() if value is not None}
    result.setdefault("outcome", exc.outcome)
    result.update(failed=True, msg=str(exc), error=type(exc).__name__, exception=traceback.format_exc())
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
