# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

Module bodies for gateway_snapshot, gateway_restore and gateway_snapshot_info.

gateway_snapshot moves data from a gateway's data directory to storage, and
gateway_restore from storage to a gateway's data directory: on one host
directly, or between hosts through a bundle file that the action plugin carries
over Ansible's connections (one task writes it on one host, the next reads it
on the other). bundle_flow() tells the action plugin which way a task's bundle
goes.
"""

from __future__ import annotations

import os
import shutil

from ansible_collections.demiurge.gateway.plugins.module_utils._dns_names import organization_id
from ansible_collections.demiurge.gateway.plugins.module_utils._journal import journal_argument_spec
from ansible_collections.demiurge.gateway.plugins.module_utils._module import ModuleDef, os_error
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_db import pool_db_argument_spec
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import DatabaseError, GatewayError, InvalidInputError
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_ops import Transaction, event
from ansible_collections.demiurge.gateway.plugins.module_utils._snapshot import (
    SnapshotError,
    bundle_data,
    bundle_snapshot,
    is_snapshot_of,
    latest_intact,
    list_snapshots,
    matches,
    org_dir,
    newest,
    restore_bundle,
    restore_snapshot,
    store_bundle,
    summary,
    take_snapshot,
)


def require_live_allocation(params, organization, allocation_id):
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
        "data_dir": {"type": "path"},
        "storage_dir": {"type": "path"},
        "bundle": {"type": "path"},
        "remove_bundle": {"type": "bool", "default": False},
        "organization": {"type": "str", "required": True},
    }


def _read_and_remove(params, read):
    """read(), then delete the bundle when it is a copy in transit (remove_bundle), whatever read()
    did: the next try brings a new copy."""
    try:
        return read()
    finally:
        if params["remove_bundle"]:
            try:
                os.unlink(params["bundle"])
            except FileNotFoundError:
                pass


# Each task names two of the three places: data_dir and storage_dir on one host, or one of them
# and the bundle that carries the snapshot to or from another host.
_TWO_PLACES = {"required_one_of": [["data_dir", "bundle"], ["storage_dir", "bundle"]]}


def _one_move(params, module):
    if all(params.get(key) for key in ("data_dir", "storage_dir", "bundle")):
        raise InvalidInputError("%s takes two of data_dir, storage_dir and bundle, not all three" % module,
                                hint="On one host give data_dir and storage_dir; between hosts, bundle and the one on this host")


def bundle_flow(params, source):
    """'out' when the task writes its bundle (for the controller to fetch), 'in' when it reads one
    (that the controller puts on the host first), None without a bundle. `source` is the place
    data comes from in this module (data_dir for gateway_snapshot, storage_dir for gateway_restore)."""
    if not params.get("bundle"):
        return None
    return "out" if params.get(source) else "in"


def snapshot_body(call):
    params = call.params
    if params.get("allocations") is not None or params.get("live_allocations"):
        return snapshot_many_body(call)
    if not params.get("organization"):
        raise InvalidInputError("gateway_snapshot needs organization, allocations or live_allocations=true",
                                hint="Name the organization, or give many")
    organization = organization_id(params["organization"])
    _one_move(params, "gateway_snapshot")
    if params["verify_allocation"]:
        require_live_allocation(params, organization, params["allocation_id"])
    if params.get("bundle") and params["data_dir"]:
        return _bundle_out(call, organization)
    if params.get("bundle"):
        return _bundle_in(call, organization)
    result = push_one(params, organization, params["data_dir"], params["allocation_id"], call.check_mode)
    if result["changed"] and params["verify_allocation"] and not call.check_mode:
        if ended_during_push(params, [(organization, params["allocation_id"])]):
            raise SnapshotError(discard(params, organization, result))
        record_stored(params, [(organization, params["allocation_id"], result)], call.warn)
    return result


def push_one(params, organization, data_dir, allocation_id, check_mode):
    """Snapshot one gateway's data into storage on this host, unless the newest intact snapshot
    holds it already."""
    latest = latest_intact(params["storage_dir"], organization)
    if latest is not None and is_snapshot_of(data_dir, organization, latest, check_mode):
        return {"changed": False, "snapshot": summary(latest), "pruned": []}
    manifest, pruned, previous = take_snapshot(data_dir, params["storage_dir"], organization, allocation_id,
                                               params["keep"], params["allow_shrink"], check_mode)
    return _stored(manifest, pruned, previous)


def require_live_allocations(params, allocations):
    """Of [(organization, allocation id)], the organizations whose allocation is not live, with why."""
    with Transaction(params, True) as conn:
        live = dict((str(o), str(a)) for o, a in conn.execute(
            "SELECT organization_id, id FROM organizations_gateways WHERE organization_id = ANY(%s::uuid[]) AND stopped_at IS NULL",
            ([organization for organization, dummy in allocations],)).fetchall())
    return {organization: "Allocation %s is not organization %s's live allocation (that is %s); its data may be stale; "
                          "snapshot only from the gateway the organization holds now"
            % (allocation_id, organization, live.get(organization, "none"))
            for organization, allocation_id in allocations if live.get(organization) != allocation_id}


def live_allocations_on(params, host):
    """The pool's active allocations, read once: (those whose gateway's data is on `host`, the others
    with their host, the organizations whose gateway names no data directory)."""
    with Transaction(params, True) as conn:
        rows = conn.execute(
            "SELECT og.organization_id, og.id, g.name, g.metadata->>'data_dir', coalesce(g.metadata->>'host', 'localhost') "
            "FROM organizations_gateways og JOIN gateways g ON g.id = og.gateway_id "
            "WHERE og.stopped_at IS NULL AND og.status = 'active' ORDER BY og.started_at").fetchall()
    here, elsewhere, refused = [], [], {}
    for organization, allocation_id, gateway, data_dir, where in rows:
        item = {"organization": str(organization), "allocation_id": str(allocation_id), "data_dir": data_dir}
        if not data_dir:
            refused[str(organization)] = ("Gateway %s has no data_dir in its pool metadata, so its data cannot be found; "
                                          "register it with one (pool_gateway metadata)" % gateway)
        elif where == host:
            here.append(item)
        else:
            elsewhere.append(dict(item, host=where))
    return here, elsewhere, refused


def ended_during_push(params, allocations):
    """Of [(organization, allocation id)] just pushed, those whose allocation is no longer live. Their
    gateway may have been wiped and handed to another organization while the copy ran, so what was
    stored must not be restored to them: checked after the copy, this leaves no such window."""
    return require_live_allocations(params, allocations) if allocations else {}


def discard(params, organization, result):
    shutil.rmtree(os.path.join(org_dir(params["storage_dir"], organization), result["snapshot"]["id"]), ignore_errors=True)
    return ("The allocation ended while its data was copied, so snapshot %s may hold another organization's data: "
            "it was discarded (the release pushed its own)" % result["snapshot"]["id"])


def push_many(params, allocations, check_mode):
    """push_one for each allocation; one organization's failure (a full disk, a refused shrink) is
    its own. Returns (results of those that got a new snapshot, how many were unchanged, failures)."""
    pushed, unchanged, failed = {}, 0, {}
    for item in allocations:
        organization = organization_id(item["organization"])
        try:
            result = push_one(params, organization, item["data_dir"], item["allocation_id"], check_mode)
            if result["changed"] and params["verify_allocation"] and not check_mode \
                    and ended_during_push(params, [(organization, item["allocation_id"])]):
                failed[organization] = discard(params, organization, result)
                continue
        except (GatewayError, OSError) as exc:
            failed[organization] = str(exc if isinstance(exc, GatewayError) else os_error(exc))
            continue
        if result["changed"]:
            pushed[organization] = result
        else:
            unchanged += 1
    return pushed, unchanged, failed


def batch_result(pushed, unchanged, failed, **extra):
    """The task's result for a batch; raises naming every failed organization, with the rest of the result."""
    changed = sorted(pushed)
    result = dict(extra, changed=bool(changed), changed_organizations=changed, unchanged=unchanged, failed_organizations=failed,
                  snapshots={o: pushed[o]["snapshot"] for o in changed}, pruned={o: pushed[o]["pruned"] for o in changed},
                  diff={"before": {"latest": {o: pushed[o].get("diff", {}).get("before", {}).get("latest") for o in changed}},
                        "after": {"latest": {o: pushed[o]["snapshot"]["id"] for o in changed}}})
    if failed:
        raise SnapshotError("%d of %d snapshots failed, the others were pushed: %s" % (
            len(failed), len(changed) + unchanged + len(failed), "; ".join("%s: %s" % item for item in sorted(failed.items()))),
            hint="Fix each cause named, then run again", **result)
    return result


def batch_allocations(params):
    """(allocations to push, refused ones with why, live allocations on other hosts or None)."""
    if params.get("live_allocations"):
        here, elsewhere, refused = live_allocations_on(params, params["host"])
        return here, refused, elsewhere
    allocations = [(organization_id(item["organization"]), item["allocation_id"]) for item in params["allocations"]]
    refused = require_live_allocations(params, allocations) if params["verify_allocation"] else {}
    return [item for item in params["allocations"] if organization_id(item["organization"]) not in refused], refused, None


def snapshot_many_body(call):
    params = call.params
    allocations, refused, elsewhere = batch_allocations(params)
    pushed, unchanged, failed = push_many(params, allocations, call.check_mode)
    if params["verify_allocation"] and not call.check_mode:
        ids = dict((organization_id(item["organization"]), item["allocation_id"]) for item in allocations)
        record_stored(params, [(o, ids[o], pushed[o]) for o in sorted(pushed)], call.warn)
    return batch_result(pushed, unchanged, dict(failed, **refused), **({} if elsewhere is None else {"elsewhere": elsewhere}))


def _stored(manifest, pruned, previous):
    return {"changed": True, "snapshot": summary(manifest), "pruned": pruned,
            "diff": {"before": {"latest": previous["id"] if previous else None}, "after": {"latest": manifest["id"]}}}


def _bundle_out(call, organization):
    params = call.params
    latest = params["latest"]
    manifest = bundle_data(params["data_dir"], params["bundle"], organization, params["allocation_id"],
                           latest if latest and latest.get("files") is not None else None,
                           params["allow_shrink"], call.check_mode)
    if manifest is None:
        return {"changed": False, "snapshot": summary(latest), "bundle": None}
    return {"changed": True, "snapshot": summary(manifest), "bundle": None if call.check_mode else params["bundle"],
            "diff": {"before": {"latest": latest.get("id") if latest else None}, "after": {"latest": manifest["id"]}}}


def _bundle_in(call, organization):
    params = call.params
    manifest, pruned, previous, stored = _read_and_remove(params, lambda: store_bundle(
        params["bundle"], params["storage_dir"], organization, params["keep"], params["allow_shrink"], call.check_mode))
    if not stored:
        return {"changed": False, "snapshot": summary(dict(manifest, intact=True)), "pruned": []}
    result = _stored(dict(manifest, intact=True), pruned, previous)
    if params["verify_allocation"] and not call.check_mode:
        record_stored(params, [(organization, params["allocation_id"], result)], call.warn)
    return result


def record_stored(params, stored, warn):
    """A snapshot.stored event for each (organization, allocation id, push result). The snapshots
    are durable in storage before their events are written, so a failure here costs the snapshot
    metrics entries (until the next push), never a snapshot: a warning, not a failure."""
    if not stored:
        return
    try:
        with Transaction(params, False) as conn:
            for organization, allocation_id, result in stored:
                event(conn, "snapshot.stored", organization=organization, allocation=allocation_id,
                      detail={"snapshot": result["snapshot"]["id"], "size_bytes": result["snapshot"].get("total_size"),
                              "pruned": result["pruned"]})
    except DatabaseError as exc:
        warn("%d snapshot(s) are stored, but their events were not recorded: %s" % (len(stored), exc))


def snapshot_argument_spec():
    spec = _storage_spec()
    spec.update(pool_db_argument_spec())
    spec.update(journal_argument_spec())
    spec["organization"] = {"type": "str"}
    spec.update(
        allocation_id={"type": "str"},
        live_allocations={"type": "bool"},
        host={"type": "str"},
        allocations={"type": "list", "elements": "dict", "options": {
            "organization": {"type": "str", "required": True},
            "allocation_id": {"type": "str", "required": True},
            "data_dir": {"type": "path", "required": True},
        }},
        keep={"type": "int", "default": 5},
        allow_shrink={"type": "bool", "default": False},
        verify_allocation={"type": "bool", "default": True},
        latest={"type": "dict"},
    )
    return spec


# One organization (organization, allocation_id and two places), or many on the storage host
# (allocations, or live_allocations and host, with storage_dir).
_SNAPSHOT_RULES = {
    "required_one_of": [["data_dir", "bundle", "allocations", "live_allocations"], ["storage_dir", "bundle"],
                        ["organization", "allocations", "live_allocations"]],
    "required_together": [["organization", "allocation_id"]],
    "mutually_exclusive": [[many, key] for many in ("allocations", "live_allocations")
                           for key in ("organization", "data_dir", "bundle", "latest")] + [["allocations", "live_allocations"]],
    "required_by": {"allocations": "storage_dir"},
    "required_if": [("live_allocations", True, ["host", "storage_dir"])],
}


def restore_body(call):
    params = call.params
    organization = organization_id(params["organization"])
    _one_move(params, "gateway_restore")
    if params.get("bundle") and params["storage_dir"]:
        chosen = bundle_snapshot(params["storage_dir"], organization, params["snapshot"], params["bundle"], call.check_mode)
        return {"changed": False, "restored": summary(chosen) if chosen else None,
                "bundle": params["bundle"] if chosen and not call.check_mode else None}
    if params.get("bundle"):
        manifest, changed = _read_and_remove(params, lambda: restore_bundle(params["bundle"], params["data_dir"], organization,
                                                                            call.check_mode))
        result = {"changed": changed, "restored": summary(dict(manifest, intact=True))}
        if changed:
            result["diff"] = {"before": {}, "after": {"snapshot": manifest["id"]}}
        return result
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
    history = list_snapshots(call.params["storage_dir"], organization)
    latest = next((m for m in history if m["intact"]), None)
    return {"changed": False, "snapshots": [summary(m) for m in history],
            "latest": {k: v for k, v in latest.items() if k != "path"} if latest else None}


def info_argument_spec():
    return {"storage_dir": {"type": "path", "required": True}, "organization": {"type": "str", "required": True}}


GATEWAY_SNAPSHOT = ModuleDef(snapshot_argument_spec, snapshot_body, bundle_flow=lambda params: bundle_flow(params, "data_dir"),
                             **_SNAPSHOT_RULES)
GATEWAY_RESTORE = ModuleDef(restore_argument_spec, restore_body, bundle_flow=lambda params: bundle_flow(params, "storage_dir"),
                            **_TWO_PLACES)
GATEWAY_SNAPSHOT_INFO = ModuleDef(info_argument_spec, info_body)
