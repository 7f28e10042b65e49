# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

Snapshots of a gateway's data (per-project Yjs state under projects/, the state
file with permissions, OAuth clients, codes and tokens, container tokens) in
central storage, one directory per organization:

    <storage>/<org>/<snapshot id>/manifest.json    sha256, size, mode per file; checksum of itself
    <storage>/<org>/<snapshot id>/files/...        the data, 0600 files in 0700 directories

A snapshot is written under a temporary name, every file fsynced while it is
hashed, then renamed into place. A restore copies into a staging directory
while hashing, refuses the snapshot unless every checksum matches, then swaps
the staging directory with the gateway's data directory in one rename.
"""

from __future__ import annotations

import ctypes
import datetime
import hashlib
import json
import os
import shutil
import time

from ansible_collections.demiurge.gateway.plugins.module_utils._dns_names import organization_id
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import GatewayError, InvalidInputError

MANIFEST = "manifest.json"
FILES = "files"
PROJECTS = "projects"
_CHUNK = 1 << 20


class SnapshotError(GatewayError):
    """A snapshot is missing, corrupt, or may not be written; nothing was changed."""

    outcome = "not_applied"


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_private(path):
    """makedirs where every directory it creates is 0700 (its mode argument covers only the last)."""
    saved = os.umask(0o077)
    try:
        os.makedirs(path, 0o700, exist_ok=True)
    finally:
        os.umask(saved)


def copy_hashing(source, target):
    """Copy source to target (0600, fsynced) in one pass; return (sha256 hex, size)."""
    digest, size = hashlib.sha256(), 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(source, "rb") as reader, os.fdopen(fd, "wb") as writer:
        while True:
            chunk = reader.read(_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
            writer.write(chunk)
        writer.flush()
        os.fsync(writer.fileno())
    return digest.hexdigest(), size


def _walk_files(root):
    """Relative paths of regular files below root, sorted; symlinks are refused."""
    found = []
    for directory, subdirs, names in os.walk(root):
        subdirs.sort()
        for name in sorted(names) + [d for d in subdirs if os.path.islink(os.path.join(directory, d))]:
            path = os.path.join(directory, name)
            if os.path.islink(path) or not os.path.isfile(path):
                raise SnapshotError("%s is not a regular file" % path, hint="Gateway data may only hold regular files")
            found.append(os.path.relpath(path, root))
    return found


def _projects(root):
    base = os.path.join(root, PROJECTS)
    return sorted(name for name in os.listdir(base) if os.path.isdir(os.path.join(base, name))) if os.path.isdir(base) else []


def manifest_checksum(manifest):
    body = {key: value for key, value in manifest.items() if key != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def org_dir(storage, organization):
    return os.path.join(storage, organization_id(organization))


def list_snapshots(storage, organization):
    """Manifests of the organization's snapshots, newest first (unreadable ones marked corrupt)."""
    base = org_dir(storage, organization)
    if not os.path.isdir(base):
        return []
    result = []
    for name in sorted(os.listdir(base), reverse=True):
        if name.startswith("."):
            continue  # a push in progress, or one that died
        try:
            with open(os.path.join(base, name, MANIFEST)) as handle:
                manifest = json.load(handle)
            manifest["intact"] = manifest.get("checksum") == manifest_checksum(manifest)
        except (OSError, ValueError):
            manifest = {"id": name, "intact": False}
        manifest["path"] = os.path.join(base, name)
        result.append(manifest)
    return result


def newest(history):
    """The newest snapshot, damaged or not: an older one is restored only when asked for by id,
    because falling back silently would lose what the newest one added."""
    return history[0] if history else None


def summary(manifest):
    keys = ("id", "created_at", "allocation_id", "organization", "file_count", "total_size", "checksum", "projects", "intact", "path")
    return {key: manifest.get(key) for key in keys}


def take_snapshot(data_dir, storage, organization, allocation_id, keep, allow_shrink, check_mode):
    """Write a snapshot of data_dir; return (manifest, pruned ids, previous manifest or None)."""
    if keep < 1:
        raise InvalidInputError("keep must be at least 1", hint="Keep one or more snapshots")
    if not os.path.isdir(data_dir):
        raise SnapshotError("Gateway data directory %s does not exist" % data_dir,
                            hint="Point data_dir at the gateway's data directory")
    history = list_snapshots(storage, organization)
    previous = next((m for m in history if m["intact"]), None)
    projects = _projects(data_dir)
    if previous is not None and not allow_shrink:
        missing = sorted(set(previous.get("projects", [])) - set(projects))
        if missing:
            raise SnapshotError(
                "Snapshot of organization %s would drop projects present in snapshot %s: %s"
                % (organization, previous["id"], ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")),
                hint="The gateway may have unloaded idle projects; set allow_shrink=true only if they were deleted on purpose")
    snapshot_id = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    if check_mode:
        return {"id": snapshot_id, "projects": projects}, [], previous
    base = org_dir(storage, organization)
    makedirs_private(base)
    staging = os.path.join(base, ".%s.tmp" % snapshot_id)
    makedirs_private(os.path.join(staging, FILES))
    try:
        files, total = {}, 0
        for relative in _walk_files(data_dir):
            target = os.path.join(staging, FILES, relative)
            makedirs_private(os.path.dirname(target))
            source = os.path.join(data_dir, relative)
            digest, size = copy_hashing(source, target)
            files[relative] = {"sha256": digest, "size": size, "mode": "%04o" % (os.stat(source).st_mode & 0o7777)}
            total += size
        manifest = {"id": snapshot_id, "organization": organization_id(organization),
                    "allocation_id": allocation_id, "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                    "projects": projects, "files": files, "file_count": len(files), "total_size": total}
        manifest["checksum"] = manifest_checksum(manifest)
        fd = os.open(os.path.join(staging, MANIFEST), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(manifest, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        for directory, dummy, dummy2 in os.walk(staging):
            _fsync_dir(directory)
        os.rename(staging, os.path.join(base, snapshot_id))
        _fsync_dir(base)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    pruned = _prune(storage, organization, keep)
    return manifest, pruned, previous


def _prune(storage, organization, keep):
    """Drop intact snapshots beyond the newest `keep` (the new one is among them, so a good one always
    stays) and leftovers of pushes that died more than an hour ago; return the dropped ids."""
    base = org_dir(storage, organization)
    for name in os.listdir(base):
        path = os.path.join(base, name)
        if name.startswith(".") and time.time() - os.stat(path).st_mtime > 3600:
            shutil.rmtree(path, ignore_errors=True)
    intact = [m for m in list_snapshots(storage, organization) if m["intact"]]
    for manifest in intact[keep:]:
        shutil.rmtree(manifest["path"])
    return [manifest["id"] for manifest in intact[keep:]]


def _verify_into(snapshot, staging):
    """Copy the snapshot's files into staging while hashing; raise SnapshotError on any mismatch."""
    manifest = {k: v for k, v in snapshot.items() if k not in ("intact", "path")}
    if not snapshot["intact"]:
        raise SnapshotError("Snapshot %s has a damaged manifest (checksum mismatch)" % snapshot["path"],
                            hint="Restore an older snapshot with the snapshot option")
    source_root = os.path.join(snapshot["path"], FILES)
    present = set(_walk_files(source_root)) if os.path.isdir(source_root) else set()
    if present != set(manifest["files"]):
        raise SnapshotError("Snapshot %s does not hold exactly the files its manifest lists (%d extra, %d missing)"
                            % (snapshot["path"], len(present - set(manifest["files"])), len(set(manifest["files"]) - present)),
                            hint="Restore an older snapshot with the snapshot option")
    for relative, expected in sorted(manifest["files"].items()):
        target = os.path.join(staging, relative)
        makedirs_private(os.path.dirname(target))
        digest, size = copy_hashing(os.path.join(source_root, relative), target)
        # Snapshots taken before modes were recorded restore as private files.
        os.chmod(target, int(expected.get("mode", "0600"), 8))
        if (digest, size) != (expected["sha256"], expected["size"]):
            raise SnapshotError("Snapshot %s is corrupt: %s has sha256 %s (%d bytes), the manifest says %s (%d bytes)"
                                % (snapshot["path"], relative, digest[:16], size, expected["sha256"][:16], expected["size"]),
                                hint="Restore an older snapshot with the snapshot option")


def _exchange(first, second):
    """Swap two directories in one step (renameat2 RENAME_EXCHANGE)."""
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd, rename_exchange = -100, 2
    if libc.renameat2(at_fdcwd, first.encode(), at_fdcwd, second.encode(), rename_exchange) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno), first)


def restore_snapshot(data_dir, storage, organization, snapshot_id, check_mode):
    """Restore a snapshot (latest intact one by default) into data_dir; return its manifest."""
    history = list_snapshots(storage, organization)
    if snapshot_id:
        chosen = next((m for m in history if m["id"] == snapshot_id), None)
        if chosen is None:
            raise SnapshotError("Organization %s has no snapshot %s in %s" % (organization, snapshot_id, storage),
                                hint="List snapshots with demiurge.gateway.gateway_snapshot_info")
    else:
        chosen = newest(history)
        if chosen is None:
            return None
    if not chosen["intact"]:
        raise SnapshotError("Snapshot %s of organization %s has a damaged manifest (checksum mismatch); nothing was restored"
                            % (chosen["id"], organization),
                            hint="Repair it, or restore an older one on purpose with the snapshot option "
                            "(gateway_snapshot_info lists them)")
    if check_mode:
        return chosen
    parent = os.path.dirname(os.path.abspath(data_dir))
    staging = os.path.join(parent, ".%s.restore" % os.path.basename(data_dir))
    shutil.rmtree(staging, ignore_errors=True)
    makedirs_private(staging)
    try:
        _verify_into(chosen, staging)
        for directory, dummy, dummy2 in os.walk(staging):
            _fsync_dir(directory)
        if os.path.isdir(data_dir):
            os.chmod(staging, os.stat(data_dir).st_mode & 0o7777)
            _exchange(staging, data_dir)  # staging now holds the previous data
        else:
            os.rename(staging, data_dir)
        _fsync_dir(parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return chosen


def matches(data_dir, manifest):
    """True when data_dir holds exactly the snapshot's files with their checksums."""
    if not os.path.isdir(data_dir):
        return False
    try:
        present = _walk_files(data_dir)
    except SnapshotError:
        return False
    if set(present) != set(manifest["files"]):
        return False
    for relative, expected in manifest["files"].items():
        digest = hashlib.sha256()
        with open(os.path.join(data_dir, relative), "rb") as handle:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(chunk)
        if digest.hexdigest() != expected["sha256"]:
            return False
    return True
