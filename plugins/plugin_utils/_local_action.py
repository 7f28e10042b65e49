# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

Action plugin base for modules whose work is API calls (or files on the
controller): when the task runs on the controller over the local connection,
without become or async, run the module's body in this process (about 14 ms of
overhead instead of about 400 ms for shipping and starting a module); otherwise
run the module as usual. Either way, the step journal is written here.

Importing this file also prepares the controller for the workers ansible forks
per task: ansible's strategy loads an action plugin's class in the controller
before it forks the task's worker, so what is loaded here is inherited by
every later worker instead of being loaded again in each.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import uuid
from contextlib import contextmanager

from ansible import constants as C
from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible.plugins.action import ActionBase
from ansible.plugins.loader import filter_loader, lookup_loader, test_loader

from ansible_collections.demiurge.gateway.plugins.module_utils._errors import (
    GatewayError,
    HostUnreachableError,
    InvalidInputError,
    StorageError,
)
from ansible_collections.demiurge.gateway.plugins.module_utils._http import tls_context
from ansible_collections.demiurge.gateway.plugins.module_utils._journal import journal_argument_spec
from ansible_collections.demiurge.gateway.plugins.module_utils._module import Call, failure
from ansible_collections.demiurge.gateway.plugins.plugin_utils._journal import JournaledBatch, JournaledStep

_RULES = ("mutually_exclusive", "required_together", "required_one_of", "required_if", "required_by")


def _prepare_controller_for_forks():
    """Load once, in the controller, what every allocation task's worker would otherwise load
    (about 15 ms per task): the builtin filters and tests (one file each), the lookups our roles
    and inventory use, and the plain-http context of our HTTP client. Then move everything loaded
    so far out of the garbage collector's reach, as CPython advises for a process that forks
    without exec: collections no longer walk (and copy-on-write) it in each worker, and exit
    no longer scans it (150 ms of ansible-playbook's exit)."""
    filter_loader.get("ansible.builtin.combine")
    test_loader.get("ansible.builtin.match")
    for lookup in ("ansible.builtin.env", "ansible.builtin.file"):
        lookup_loader.get(lookup)
    tls_context("http://")
    gc.freeze()


_prepare_controller_for_forks()


def run_command(argv):
    """AnsibleModule.run_command's contract, for bodies run on the controller."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


@contextmanager
def _environment(overrides):
    """Apply the task's environment: keyword while fallbacks are read (this worker process only)."""
    saved = dict(os.environ)
    os.environ.update({key: str(value) for key, value in overrides.items()})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class LocalFirstAction(ActionBase):
    """Subclasses set DEFINITION to the module's ModuleDef. A task's `journal` argument is taken
    out here and written on the controller around the work (plugin_utils/_journal.py)."""

    DEFINITION = None
    TRANSFERS_FILES = False

    def _task_environment(self):
        merged = {}
        for block in self._task.environment or ():
            merged.update(self._templar.template(block))
        return merged

    def _runs_here(self, task_vars):
        """The in-process shortcut only where it changes nothing a task asked for: a local
        connection, no privilege escalation, no async, this very interpreter."""
        interpreter = task_vars.get("ansible_python_interpreter")
        return (self._connection.transport == "local" and not self._task.become and not self._task.async_val
                and (interpreter is None or os.path.realpath(str(interpreter)) == os.path.realpath(sys.executable)))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        module_args = {key: value for key, value in self._task.args.items() if key != "journal"}
        spooled = self._spool(module_args)
        try:
            result = self._run_journaled(result, module_args, task_vars)
        finally:
            if spooled:
                os.unlink(spooled)
        if result.get("failed") and self._task.delegate_to:
            # Which host failed, for the rescue's message (a registered result no longer says where
            # a delegated task ran).
            result.setdefault("failed_on", self._task.delegate_to)
        return result

    def _spool(self, module_args):
        """A relative bundle path names a file in this run's private temporary directory on the
        controller (0700, removed when ansible-playbook exits). Return it when this task is the one
        that reads it, so it is deleted afterwards: a bundle is a copy in transit."""
        bundle = module_args.get("bundle")
        if not (self.DEFINITION.bundle_flow and bundle):
            return None
        bundle = module_args["bundle"] = os.path.join(C.DEFAULT_LOCAL_TMP, bundle)
        spooled = os.path.dirname(bundle) == C.DEFAULT_LOCAL_TMP and os.path.exists(bundle)
        return bundle if spooled and self.DEFINITION.bundle_flow(module_args) == "in" else None

    def _run_journaled(self, result, module_args, task_vars):
        journal = self._task.args.get("journal")
        if not journal or self._task.check_mode:
            result.update(self._work(module_args, task_vars))
            return result
        try:
            with _environment(self._task_environment()):
                checked = ArgumentSpecValidator(journal_argument_spec()).validate({"journal": journal})
            if checked.error_messages:
                raise InvalidInputError("journal: %s" % "; ".join(checked.error_messages))
            host = self._task.delegate_to or task_vars.get("inventory_hostname")
            journal = checked.validated_parameters["journal"]
            if journal["allocations"] is not None:
                work = self._run_batch_journaled(journal, host, module_args, task_vars)
            else:
                with JournaledStep(journal, host) as step:
                    work = self._work(module_args, task_vars)
                    self._finish(step, work)
        except GatewayError as exc:
            work = failure(exc)
        result.update(work)
        return remove_values(result, [journal.get("login_password")] if journal.get("login_password") else [])

    @staticmethod
    def _finish(journal, work):
        try:
            journal.finish(work)
        except GatewayError as exc:
            if not work.get("failed"):
                raise
            work.setdefault("warnings", []).append("The journal did not record this failure: %s" % exc)

    def _run_batch_journaled(self, journal, host, module_args, task_vars):
        """A many-organizations call: each organization journaled on its own allocation; one whose
        allocation is no longer this run's is left out and fails alone."""
        option = self.DEFINITION.batch
        if option is None or not isinstance(module_args.get(option), list):
            raise InvalidInputError("journal.allocations needs the module's many-organizations option%s"
                                    % (" (%s)" % option if option else ", which this module does not have"),
                                    hint="Use journal.allocation_id for a call that changes one organization")
        journal = dict(journal, allocations={str(key).lower(): value for key, value in journal["allocations"].items()})
        entries = module_args[option]
        unnamed = sorted({str(entry.get("organization")) for entry in entries
                          if str(entry.get("organization")).lower() not in journal["allocations"]})
        if unnamed:
            raise InvalidInputError("journal.allocations names no allocation for %s" % ", ".join(unnamed),
                                    hint="Name the allocation of every organization in %s; nothing was changed" % option)
        with JournaledBatch(journal, host) as batch:
            kept = [entry for entry in entries if str(entry["organization"]).lower() not in batch.refused]
            work = self._work(dict(module_args, **{option: kept}), task_vars) if kept else {"changed": False}
            self._finish(batch, work)
        if batch.refused:
            failed = dict(work.get("failed_organizations") or {}, **batch.refused)
            work.update(failed=True, failed_organizations=failed, outcome=work.get("outcome", "not_applied"),
                        msg="%d of %d organizations were not changed: %s" % (
                            len(failed), len(entries), "; ".join("%s: %s" % item for item in sorted(failed.items()))))
        return work

    def _validated(self):
        """The task's arguments checked against the module's own spec, with environment fallbacks."""
        definition = self.DEFINITION
        with _environment(self._task_environment()):
            validation, dummy = self.validate_argument_spec(
                argument_spec=definition.argument_spec(),
                **{key: value for key, value in definition.rules.items() if key in _RULES})
        return validation

    def _work(self, module_args, task_vars):
        if not self._runs_here(task_vars):
            return self._run_on_host(module_args, task_vars)
        validation = self._validated()
        call = Call(validation.validated_parameters, self._task.check_mode, self._task.diff, self._run_command)
        return remove_values(self.DEFINITION.execute(call), validation._no_log_values)  # pylint: disable=protected-access

    def _run_on_host(self, module_args, task_vars):
        """Run the module on the task's host. A delegated task whose host does not answer fails
        (outcome unknown) instead of marking the play's host unreachable: Ansible runs no rescue for
        an unreachable host, and the play's host (the controller) is fine; the rescue undoes what
        it can and leaves the rest, journaled, to reconcile.yml."""
        host = self._task.delegate_to or task_vars.get("inventory_hostname")
        try:
            return self._run_with_bundle(module_args, task_vars, host)
        except AnsibleConnectionFailure as exc:
            if not self._task.delegate_to:
                raise
            # No cleanup over a connection that is gone (it would make the task unreachable after all);
            # the host's temporary directory is in its own temporary file system.
            self._connection._shell.tmpdir = None  # pylint: disable=protected-access
            return failure(HostUnreachableError(
                "Host %s did not answer on its connection: %s" % (host, str(exc).strip().splitlines()[-1] if str(exc).strip() else exc),
                hint="Whether the task was applied there is unknown, so it stays journaled and is undone or "
                "repaired there later. Bring %s back (sshd, link, the machine), then run reconcile.yml" % host))

    def _run_with_bundle(self, module_args, task_vars, host):
        """A bundle file named by the task (a path on the controller) goes to the host before the
        module reads it, or comes back after the module wrote it, through the host's own
        connection, so a snapshot never passes through memory. On the host it lives in transit in
        the host's temporary directory: each command over the connection costs a round trip (about
        110 ms over SSH), so none runs to make or remove a directory of its own."""
        flow = self.DEFINITION.bundle_flow(module_args) if self.DEFINITION.bundle_flow else None
        if flow is None:
            return self._execute_module(module_args=module_args, task_vars=task_vars)
        local = module_args["bundle"]
        try:
            if flow == "in":
                remote = self._put_bundle(local)
                # The module deletes its copy once read, whatever the outcome.
                result = self._execute_module(module_args=dict(module_args, bundle=remote, remove_bundle=True),
                                              task_vars=task_vars)
                if _did_not_run(result):
                    self._remove_remote(remote)
                return result
            if self._task.become:
                shell = self._connection._shell  # pylint: disable=protected-access
                remote = shell.join_path(self._make_tmp_path(), _transit_name())
            else:
                remote = self._transit_path()[0]
            result = self._execute_module(module_args=dict(module_args, bundle=remote), task_vars=task_vars)
            if _did_not_run(result):
                self._remove_remote(remote)
            if result.get("bundle") and not result.get("failed"):
                try:
                    # Created private first: the bundle holds the organization's tokens.
                    os.close(os.open(local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600))
                    self._connection.fetch_file(result["bundle"], local)
                    os.chmod(local, 0o600)
                finally:
                    self._remove_remote(result["bundle"])
                result["bundle"] = local
            return result
        except AnsibleConnectionFailure:
            raise
        except AnsibleError as exc:
            return failure(StorageError(
                "Moving the snapshot bundle %s %s host %s failed: %s" % (local, "to" if flow == "in" else "from", host, exc),
                hint="A bundle is only a copy in transit: nothing was written from it. Check the connection to %s "
                "and the free space on both ends, then run again" % host, outcome="not_applied"))

    def _transit_path(self):
        """(path for the module, path for the file transfer) of a new bundle in the host's
        temporary directory (remote_tmp; the module makes it when missing). A directory under the
        home directory is given to the transfer relative to it (transfers start there and do not
        expand ~) and to the module with ~ (its path option expands it)."""
        shell = self._connection._shell  # pylint: disable=protected-access
        path = shell.join_path(shell.get_option("remote_tmp"), _transit_name())
        return path, path[2:] if path.startswith("~/") else path

    def _put_bundle(self, local):
        """Put the bundle on the host; return its path there for the module. Under become, or
        where the temporary directory does not exist yet (nothing used this host's since it
        started), in a directory of this task's instead, readable by the module's user (removed
        by the task's cleanup)."""
        if not self._task.become:
            remote, transfer = self._transit_path()
            try:
                self._connection.put_file(local, transfer)
                return remote
            except AnsibleConnectionFailure:
                raise
            except AnsibleError:
                pass
        shell = self._connection._shell  # pylint: disable=protected-access
        tmpdir = self._make_tmp_path()
        remote = shell.join_path(tmpdir, _transit_name())
        self._connection.put_file(local, remote)
        self._fixup_perms2((tmpdir, remote), execute=False)
        return remote

    def _remove_remote(self, path):
        shell = self._connection._shell  # pylint: disable=protected-access
        self._low_level_execute_command(shell.remove(path), sudoable=False)

    @staticmethod
    def _run_command(argv):
        return run_command(argv)


def _transit_name():
    """A bundle's file name on a host; reconcile.yml sweeps what killed runs left by this name."""
    return "demiurge-bundle-%s.tar" % uuid.uuid4().hex


def _did_not_run(result):
    """A failure without the module's own error class: the module did not start or did not end
    (no Python, a crash), so it may have left its bundle behind."""
    return bool(result.get("failed")) and not result.get("error")
