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
"""

from __future__ import annotations

from ansible_collections.demiurge.gateway.plugins.module_utils._errors import DatabaseError, GatewayError
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_db import connect
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_ops import write_step


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
    return detail


class JournaledStep:
    """with JournaledStep(journal, host) as step: result = work(); step.finish(result)"""

    def __init__(self, journal, host):
        self.journal = dict(journal, host=host or "")
        self.conn = None

    def __enter__(self):
        self.conn = connect(self.journal)
        try:
            write_step(self.journal, "started", conn=self.conn)
        except GatewayError:
            self.conn.close()
            raise
        return self

    def finish(self, result):
        self._record(outcome(result), _detail(result))

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is not None and issubclass(exc_type, Exception):
                try:
                    self._record("unknown", {"error": str(exc)[:500]})
                except GatewayError:
                    pass  # The task's own error says more; left "started", the step is undone all the same.
        finally:
            self.conn.close()
        return False

    def _record(self, state, detail):
        try:
            write_step(self.journal, state, detail, conn=self.conn)
            return
        except DatabaseError:
            if not self.conn.broken:
                raise
        # The connection was lost while the step ran: the record is an upsert, so once more is safe.
        self.conn.close()
        self.conn = connect(self.journal)
        write_step(self.journal, state, detail, conn=self.conn)
