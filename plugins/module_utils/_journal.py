# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

The `journal` option of step modules (pdns_rrset, edge_route, gateway_session):
record the step as started before the work, done after it, failed when it
raises, in the allocation's journal; one task instead of three. The records of
one step share a connection, each in a transaction of its own, so "started" is
durable before the work begins.
"""

from __future__ import annotations

from ansible_collections.demiurge.gateway.plugins.module_utils._errors import DatabaseError, GatewayError
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_db import connect, pool_db_argument_spec
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_ops import write_step


def journal_argument_spec():
    options = pool_db_argument_spec()
    options.update(
        allocation_id={"type": "str", "required": True},
        step={"type": "str", "required": True},
        lease_seconds={"type": "int", "default": 600},
    )
    return {"journal": {"type": "dict", "options": options}}


def _record(journal, conn, state, detail=None):
    """Write one journal record on the step's connection. When that connection was lost while the
    step ran (a server restart, a network cut), write it once more on a fresh one: the record is an
    upsert, so a second write cannot duplicate it. Returns the connection to use next."""
    try:
        write_step(journal, state, detail, conn=conn)
        return conn
    except DatabaseError:
        if not conn.broken:
            raise
    conn.close()
    conn = connect(journal)
    write_step(journal, state, detail, conn=conn)
    return conn


def journaled(body):
    """Wrap a module body so that its `journal` option records the step around the work."""
    def run(call):
        journal = call.params.get("journal")
        if not journal or call.check_mode:
            return body(call)
        conn = connect(journal)
        try:
            write_step(journal, "started", conn=conn)
            try:
                result = body(call)
            except GatewayError as exc:
                try:
                    conn = _record(journal, conn, "failed", {"error": str(exc)[:500]})
                except DatabaseError:
                    pass  # The step's own error says more; left "started", it is undone all the same.
                raise
            conn = _record(journal, conn, "done")
        finally:
            conn.close()
        return result
    return run
