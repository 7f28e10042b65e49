# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

The step journal, written by the action layer on the controller around a task's
work, wherever the module itself runs: `started` before it, then `done`, `failed`
(the module knows nothing was applied) or `unknown` (it may have been: a timeout,
a lost connection, an unreachable host). One record per step and host. The
records share one connection, each in its own transaction, so `started` is
durable before the work begins; a connection lost meanwhile is replaced once.
While the work runs, a heartbeat renews the run's leases on its allocations every
third of a lease: only a dead (or stopped) run's lease expires, however slow the
machine or the step.
"""

from __future__ import annotations

import threading

from ansible_collections.demiurge.gateway.plugins.module_utils._errors import DatabaseError, GatewayError, LeaseHeldError
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_db import connect
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_ops import renew_leases, write_step


def outcome(result):
    """Journal state of a finished task's result."""
    if not (result.get("failed") or result.get("unreachable")):
        return "done"
    return "failed" if result.get("outcome") == "not_applied" else "unknown"


def _detail(result):
    """What is worth keeping in a step's record: the snapshot a release pushed, the snapshot a
    restore used, or the error."""
    detail = {}
    for key in ("snapshot", "restored"):
        if isinstance(result.get(key), dict):
            detail[key] = result[key].get("id")
    if result.get("failed") or result.get("unreachable"):
        detail["error"] = str(result.get("msg", ""))[:500]
        if result.get("gateway_fault"):
            detail["gateway_fault"] = True
    return detail


class _Journal:
    """One connection for a call's records, each in its own transaction."""

    def __init__(self, journal, host):
        self.journal = dict(journal, host=host or "")
        self.conn = None
        self._stop, self._heartbeat = threading.Event(), None

    def _beat(self, allocation_ids):
        """Renew the leases every third of a lease until the work ends. A renewal that fails is
        skipped: the step's own records say what happened, and a lease that lapses only lets
        reconcile take the allocation over, as for a dead run."""
        interval = max(0.2, float(self.journal.get("lease_seconds") or 60) / 3)
        # The connection is the heartbeat's alone until it stops: the records are written after.
        while not self._stop.wait(interval):
            try:
                renew_leases(self.journal, allocation_ids, self.conn)
            except GatewayError:
                pass

    def _start_heartbeat(self, allocation_ids):
        if allocation_ids and self.journal.get("lease_holder"):
            self._heartbeat = threading.Thread(target=self._beat, args=(list(allocation_ids),), daemon=True)
            self._heartbeat.start()

    def _stop_heartbeat(self):
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None

    def _write(self, params, state, detail=None):
        try:
            write_step(params, state, detail, conn=self.conn)
            return
        except DatabaseError:
            if not self.conn.broken:
                raise
        # The connection was lost while the step ran: the record is an upsert, so once more is safe.
        self.conn.close()
        self.conn = connect(self.journal)
        write_step(params, state, detail, conn=self.conn)


class JournaledStep(_Journal):
    """with JournaledStep(journal, host) as step: result = work(); step.finish(result)"""

    def __enter__(self):
        self.conn = connect(self.journal)
        try:
            write_step(self.journal, "started", conn=self.conn)
        except GatewayError:
            self.conn.close()
            raise
        self._start_heartbeat([self.journal["allocation_id"]])
        return self

    def finish(self, result):
        self._stop_heartbeat()
        self._write(self.journal, outcome(result), _detail(result))

    def __exit__(self, exc_type, exc, tb):
        self._stop_heartbeat()
        try:
            if exc_type is not None and issubclass(exc_type, Exception):
                try:
                    self._write(self.journal, "unknown", {"error": str(exc)[:500]})
                except GatewayError:
                    pass  # The task's own error says more; left "started", the step is undone all the same.
        finally:
            self.conn.close()
        return False


class JournaledBatch(_Journal):
    """The journal of a call that changes many organizations (`allocations`: organization ->
    allocation id): a `started` record for each before the work, on one connection, then each
    organization's own outcome. An organization whose record cannot be written (its allocation is
    no longer live under this run's lease) is left out of the work: see `refused`."""

    def __init__(self, journal, host):
        super().__init__(journal, host)
        self.allocations, self.refused = {}, {}

    def __enter__(self):
        self.conn = connect(self.journal)
        try:
            for organization, allocation_id in self.journal["allocations"].items():
                try:
                    write_step(self._params(allocation_id), "started", conn=self.conn)
                    self.allocations[organization] = allocation_id
                except LeaseHeldError as exc:
                    self.refused[organization] = str(exc)
        except GatewayError:
            self.conn.close()
            raise
        self._start_heartbeat(self.allocations.values())
        return self

    def finish(self, result):
        """Record each organization's outcome: the result's failed_organizations fail alone (unknown
        when listed in unknown_organizations); a failure of the whole call is each one's."""
        self._stop_heartbeat()
        failed = result.get("failed_organizations")
        unknown = set(result.get("unknown_organizations") or ())
        for organization, allocation_id in self.allocations.items():
            if failed is None:
                state, detail = outcome(result), _detail(result)
            elif organization in failed:
                state = "unknown" if organization in unknown else "failed"
                detail = {"error": str(failed[organization])[:500]}
                if organization in (result.get("gateway_faults") or ()):
                    detail["gateway_fault"] = True
            else:
                state, detail = "done", {}
            self._write(self._params(allocation_id), state, detail)

    def __exit__(self, exc_type, exc, tb):
        self._stop_heartbeat()
        try:
            if exc_type is not None and issubclass(exc_type, Exception):
                for allocation_id in self.allocations.values():
                    try:
                        self._write(self._params(allocation_id), "unknown", {"error": str(exc)[:500]})
                    except GatewayError:
                        break  # The task's own error says more; left "started", each step is undone all the same.
        finally:
            self.conn.close()
        return False

    def _params(self, allocation_id):
        return dict(self.journal, allocation_id=allocation_id)
