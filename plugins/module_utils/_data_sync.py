# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

Module bodies for gateway_snapshot, gateway_restore and gateway_snapshot_info.
"""

from __future__ import annotations

from ansible_collections.demiurge.gateway.plugins.module_utils._dns_names import organization_id
from ansible_collections.demiurge.gateway.plugins.module_utils._journal import journal_argument_spec
from ansible_collections.demiurge.gateway.plugins.module_utils._module import ModuleDef
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_db import pool_db_argument_spec
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import DatabaseError
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_ops import Transaction, event
from ansible_collections.demiurge.gateway.plugins.module_utils._snapshot import (
    SnapshotError,
    list_snapshots,
    matches,
    newest,
    restore_snapshot,
    summary,
    take_snapshot,
)


def _require_live_allocation(params, organization, allocation_id):
    with Transaction(params, True) as conn:
        row = conn.execute("SELECT id FROM organizations_gateways WHERE organization_id = %s AND stopped_at IS NULL",
                           (organization,)).fetchone()
    if row is None or str(row[0]) != allocation_id:
        raise SnapshotError(
            "Allocation %s is not organization %s's live allocation (that is %s); its data may be stale"
            % (allocation_id, organization, row[0] if row else "none"),
            hint="Snapshot only from the gateway the organization holds now")


def _storage_spec():
    return {
        "data_dir": {"type": "path", "required": True},
        "storage_dir": {"type": "path", "required": True},
        "organization": {"type": "str", "required": True},
    }


def snapshot_body(call):
    params = call.params
    organization = organization_id(params["organization"])
    if params["verify_allocation"]:
        _require_live_allocation(params, organization, params["allocation_id"])
    latest = next((m for m in list_snapshots(params["storage_dir"], organization) if m["intact"]), None)
    if latest is not None and matches(params["data_dir"], latest):
        return {"changed": False, "snapshot": summary(latest), "pruned": []}
    manifest, pruned, previous = take_snapshot(params["data_dir"], params["storage_dir"], organization,
                                               params["allocation_id"], params["keep"], params["allow_shrink"],
                                               call.check_mode)
    if params["verify_allocation"] and not call.check_mode:
        _record_stored(call, organization, manifest, pruned)
    return {"changed": True, "snapshot": summary(manifest), "pruned": pruned,
            "diff": {"before": {"latest": previous["id"] if previous else None}, "after": {"latest": manifest["id"]}}}


def _record_stored(call, organization, manifest, pruned):
    """The snapshot is durable in storage before its event is written, so a failure here costs the
    snapshot metrics one entry (until the next push), never the snapshot: a warning, not a failure."""
    try:
        with Transaction(call.params, False) as conn:
            event(conn, "snapshot.stored", organization=organization, allocation=call.params["allocation_id"],
                  detail={"snapshot": manifest["id"], "size_bytes": manifest.get("total_size"), "pruned": pruned})
    except DatabaseError as exc:
        call.warn("Snapshot %s is stored, but its event was not recorded: %s" % (manifest["id"], exc))


def snapshot_argument_spec():
    spec = _storage_spec()
    spec.update(pool_db_argument_spec())
    spec.update(journal_argument_spec())
    spec.update(
        allocation_id={"type": "str", "required": True},
        keep={"type": "int", "default": 5},
        allow_shrink={"type": "bool", "default": False},
        verify_allocation={"type": "bool", "default": True},
    )
    return spec


def restore_body(call):
    params = call.params
    organization = organization_id(params["organization"])
    history = list_snapshots(params["storage_dir"], organization)
    wanted = next((m for m in history if m["id"] == params["snapshot"]), None) if params["snapshot"] else newest(history)
    if wanted is not None and wanted["intact"] and matches(params["data_dir"], wanted):
        return {"changed": False, "restored": summary(wanted)}
    restored = restore_snapshot(params["data_dir"], params["storage_dir"], organization, params["snapshot"], call.check_mode)
    if restored is None:
        return {"changed": False, "restored": None}
    return {"changed": True, "restored": summary(restored), "diff": {"before": {}, "after": {"snapshot": restored["id"]}}}


def restore_argument_spec():
    spec = _storage_spec()
    spec.update(journal_argument_spec())
    spec.update(snapshot={"type": "str"})
    return spec


def info_body(call):
    organization = organization_id(call.params["organization"])
    return {"changed": False, "snapshots": [summary(m) for m in list_snapshots(call.params["storage_dir"], organization)]}


def info_argument_spec():
    return {"storage_dir": {"type": "path", "required": True}, "organization": {"type": "str", "required": True}}


GATEWAY_SNAPSHOT = ModuleDef(snapshot_argument_spec, snapshot_body)
GATEWAY_RESTORE = ModuleDef(restore_argument_spec, restore_body)
GATEWAY_SNAPSHOT_INFO = ModuleDef(info_argument_spec, info_body)
