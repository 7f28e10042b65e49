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

Between hosts (a gateway host and the storage host), a snapshot travels as a
bundle: one uncompressed tar file holding files/<path> members and the
manifest. The receiving side unpacks it into staging while hashing and keeps
it only when the manifest is intact, names the organization expected, and
matches every file; the bundle itself is never trusted.

So that a periodic sync costs what changed rather than what exists, a push that
finds or makes a snapshot equal to the data leaves a note beside the data
directory (.<name>.snapshot-state.json): the organization, the snapshot id and
what lstat() said of every entry. While the storage's newest intact snapshot is
still that id and every entry looks the same, the data is not read again. Any
write changes an entry's ctime (which no program can set back), so a skipped
push can only miss a change made in the same instant as the note; entries
changed within _RACY_NS of the note are never trusted, as git does for its index.
"""

from __future__ import annotations

import ctypes
import datetime
import hashlib
import json
import os
import shutil
import tarfile
import time

from ansible_collections.demiurge.gateway.plugins.module_utils._dns_names import organization_id
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import GatewayError, InvalidInputError

MANIFEST = "manifest.json"
FILES = "files"
PROJECTS = "projects"
_CHUNK = 1 << 20
# A manifest lists one entry per file; this bounds what a bundle may make the reader hold.
_MANIFEST_MAX_BYTES = 64 << 20
STATE_SUFFIX = ".snapshot-state.json"
_RACY_NS = 2 * 10**9


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


def latest_intact(storage, organization):
    """The newest intact snapshot's manifest, reading only as many manifests as it takes."""
    base = org_dir(storage, organization)
    try:
        names = sorted((name for name in os.listdir(base) if not name.startswith(".")), reverse=True)
    except FileNotFoundError:
        return None
    for name in names:
        try:
            with open(os.path.join(base, name, MANIFEST)) as handle:
                manifest = json.load(handle)
        except (OSError, ValueError):
            continue
        if manifest.get("checksum") == manifest_checksum(manifest):
            return dict(manifest, intact=True, path=os.path.join(base, name))
    return None


def _beside(data_dir, suffix):
    parent, name = os.path.split(os.path.normpath(os.path.abspath(data_dir)))
    return os.path.join(parent, ".%s%s" % (name, suffix))


def _state_path(data_dir):
    return _beside(data_dir, STATE_SUFFIX)


def _restore_staging(data_dir):
    return _beside(data_dir, ".restore")


def written_beside(data_dir):
    """What the life cycle writes beside a gateway's data directory for an organization: the restore
    staging (the organization's data while a restore runs) and the note of which snapshot the data
    equals. A recycle removes them with the data."""
    return [_restore_staging(data_dir), _state_path(data_dir)]


def data_state(data_dir):
    """(when it was read, what lstat() says of data_dir and every entry below it)."""
    taken = time.time_ns()
    entries = {}
    for directory, subdirs, names in os.walk(data_dir):
        for name in [""] + subdirs + names:
            path = os.path.join(directory, name) if name else directory
            stat = os.lstat(path)
            entries[os.path.relpath(path, data_dir)] = [stat.st_mode, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
    return taken, entries


def unchanged_since(data_dir, organization, snapshot_id, state):
    """True when the note beside data_dir says its data equals snapshot_id and `state` (from
    data_state) shows nothing changed since the note was written."""
    try:
        with open(_state_path(data_dir)) as handle:
            note = json.load(handle)
    except (OSError, ValueError):
        return False
    if note.get("organization") != organization_id(organization) or note.get("snapshot") != snapshot_id:
        return False
    if note.get("entries") != state[1]:
        return False
    newest_change = max((entry[3] for entry in state[1].values()), default=0)
    return newest_change < note.get("taken", 0) - _RACY_NS


def remember(data_dir, organization, snapshot_id, state):
    """Note that data_dir, as `state` saw it, equals snapshot_id. Only a shortcut: when the note
    cannot be written the next push reads the data again."""
    path = _state_path(data_dir)
    temporary = "%s.%d" % (path, os.getpid())
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"organization": organization_id(organization), "snapshot": snapshot_id,
                       "taken": state[0], "entries": state[1]}, handle)
        os.replace(temporary, path)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass


def newest(history):
    """The newest snapshot, damaged or not: an older one is restored only when asked for by id,
    because falling back silently would lose what the newest one added."""
    return history[0] if history else None


def summary(manifest):
    keys = ("id", "created_at", "allocation_id", "organization", "file_count", "total_size", "checksum", "projects", "intact", "path")
    return {key: manifest.get(key) for key in keys}


def _new_id():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def _refuse_shrink(previous, projects, organization):
    """Refuse to replace `previous` (a manifest or None) with a snapshot lacking some of its projects."""
    missing = sorted(set(previous.get("projects", [])) - set(projects)) if previous else []
    if missing:
        raise SnapshotError(
            "Snapshot of organization %s would drop projects present in snapshot %s: %s"
            % (organization, previous["id"], ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")),
            hint="The gateway may have unloaded idle projects; set allow_shrink=true only if they were deleted on purpose")


def _sealed(snapshot_id, organization, allocation_id, projects, files):
    manifest = {"id": snapshot_id, "organization": organization_id(organization),
                "allocation_id": allocation_id, "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "projects": projects, "files": files, "file_count": len(files),
                "total_size": sum(entry["size"] for entry in files.values())}
    manifest["checksum"] = manifest_checksum(manifest)
    return manifest


def _require_data_dir(data_dir):
    if not os.path.isdir(data_dir):
        raise SnapshotError("Gateway data directory %s does not exist" % data_dir,
                            hint="Point data_dir at the gateway's data directory")


def take_snapshot(data_dir, storage, organization, allocation_id, keep, allow_shrink, check_mode):
    """Write a snapshot of data_dir; return (manifest, pruned ids, previous manifest or None)."""
    if keep < 1:
        raise InvalidInputError("keep must be at least 1", hint="Keep one or more snapshots")
    _require_data_dir(data_dir)
    history = list_snapshots(storage, organization)
    previous = next((m for m in history if m["intact"]), None)
    projects = _projects(data_dir)
    if not allow_shrink:
        _refuse_shrink(previous, projects, organization)
    snapshot_id = _new_id()
    if check_mode:
        return {"id": snapshot_id, "projects": projects}, [], previous
    # Read before the copy: a file written during it looks changed next time.
    state = data_state(data_dir)
    base = org_dir(storage, organization)
    makedirs_private(base)
    staging = os.path.join(base, ".%s.tmp" % snapshot_id)
    makedirs_private(os.path.join(staging, FILES))
    try:
        files = {}
        for relative in _walk_files(data_dir):
            target = os.path.join(staging, FILES, relative)
            makedirs_private(os.path.dirname(target))
            source = os.path.join(data_dir, relative)
            digest, size = copy_hashing(source, target)
            files[relative] = {"sha256": digest, "size": size, "mode": "%04o" % (os.stat(source).st_mode & 0o7777)}
        manifest = _sealed(snapshot_id, organization, allocation_id, projects, files)
        _write_manifest(staging, manifest)
        _settle(staging, base, snapshot_id)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    remember(data_dir, organization, snapshot_id, state)
    pruned = _prune(storage, organization, keep)
    return manifest, pruned, previous


def _write_manifest(directory, manifest):
    fd = os.open(os.path.join(directory, MANIFEST), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(manifest, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())


def _settle(staging, base, snapshot_id):
    """Make a fully written staging directory the snapshot `snapshot_id`, durably."""
    for directory, dummy, dummy2 in os.walk(staging):
        _fsync_dir(directory)
    os.rename(staging, os.path.join(base, snapshot_id))
    _fsync_dir(base)


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


def choose(storage, organization, snapshot_id):
    """The snapshot to restore: `snapshot_id`, or the newest; None when the organization has none.
    A damaged one is refused rather than passed over."""
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
    return chosen


def restore_snapshot(data_dir, storage, organization, snapshot_id, check_mode):
    """Restore a snapshot (latest intact one by default) into data_dir; return its manifest."""
    chosen = choose(storage, organization, snapshot_id)
    if chosen is None or check_mode:
        return chosen
    _swap_in(data_dir, lambda staging: _verify_into(chosen, staging))
    return chosen


def _swap_in(data_dir, fill):
    """Fill a staging directory beside data_dir (fill(staging) raises when what it copies is not
    intact, and returns False when data_dir holds it already), then swap it with data_dir in one
    rename; return whether it did."""
    parent = os.path.dirname(os.path.abspath(data_dir))
    staging = _restore_staging(data_dir)
    shutil.rmtree(staging, ignore_errors=True)
    makedirs_private(staging)
    try:
        if fill(staging) is False:
            return False
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
    return True


def is_snapshot_of(data_dir, organization, manifest, check_mode):
    """True when data_dir holds what the snapshot `manifest` holds: by the note beside it when
    nothing changed since, else by reading every file (and then noting it, outside check mode)."""
    state = data_state(data_dir)
    if unchanged_since(data_dir, organization, manifest["id"], state):
        return True
    if not matches(data_dir, manifest):
        return False
    if not check_mode:
        remember(data_dir, organization, manifest["id"], state)
    return True


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


class _HashingReader:
    """A file object that hashes what is read through it."""

    def __init__(self, raw):
        self.raw = raw
        self.digest = hashlib.sha256()

    def read(self, size=-1):
        chunk = self.raw.read(size)
        self.digest.update(chunk)
        return chunk


def _create_bundle(bundle):
    """The bundle file, empty, 0600 (a bundle holds an organization's tokens), in a directory made
    private when it is missing (the host's temporary directory, on a host no module used yet)."""
    makedirs_private(os.path.dirname(bundle) or ".")
    fd = os.open(bundle, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb")


def _add_member(tar, name, reader, size, mode=0o600):
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, int(time.time())
    tar.addfile(info, reader)


def _add_manifest(tar, manifest):
    body = json.dumps(manifest, sort_keys=True).encode()
    _add_member(tar, MANIFEST, _BytesReader(body), len(body))


class _BytesReader:
    def __init__(self, data):
        self.data, self.offset = data, 0

    def read(self, size=-1):
        end = len(self.data) if size < 0 else self.offset + size
        chunk, self.offset = self.data[self.offset:end], min(end, len(self.data))
        return chunk


def _write_bundle(bundle, write):
    """Run write(tar) into a new bundle file, fsynced; remove the file when write fails."""
    try:
        with _create_bundle(bundle) as handle:
            with tarfile.open(fileobj=handle, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                result = write(tar)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        if os.path.exists(bundle):
            os.unlink(bundle)
        raise
    return result


def bundle_data(data_dir, bundle, organization, allocation_id, latest, allow_shrink, check_mode):
    """Write a snapshot of data_dir into a bundle file (on the gateway's host, for the storage host).
    `latest` is the storage's newest intact manifest (or None): data that matches it is not bundled
    (None is returned), and a snapshot that drops its projects is refused unless allow_shrink."""
    _require_data_dir(data_dir)
    if latest is not None and is_snapshot_of(data_dir, organization, latest, check_mode):
        return None
    projects = _projects(data_dir)
    if not allow_shrink:
        _refuse_shrink(latest, projects, organization)
    snapshot_id = _new_id()
    if check_mode:
        return {"id": snapshot_id, "projects": projects}
    state = data_state(data_dir)

    def write(tar):
        files = {}
        for relative in _walk_files(data_dir):
            source = os.path.join(data_dir, relative)
            with open(source, "rb") as raw:
                stat = os.fstat(raw.fileno())
                reader = _HashingReader(raw)
                _add_member(tar, FILES + "/" + relative, reader, stat.st_size)
            files[relative] = {"sha256": reader.digest.hexdigest(), "size": stat.st_size,
                               "mode": "%04o" % (stat.st_mode & 0o7777)}
        manifest = _sealed(snapshot_id, organization, allocation_id, projects, files)
        _add_manifest(tar, manifest)
        return manifest

    manifest = _write_bundle(bundle, write)
    remember(data_dir, organization, snapshot_id, state)
    return manifest


def bundle_snapshot(storage, organization, snapshot_id, bundle, check_mode):
    """Write a stored snapshot (`snapshot_id`, or the newest) into a bundle file (on the storage
    host, for a gateway's host), checking every file while it is read; None when there is none."""
    chosen = choose(storage, organization, snapshot_id)
    if chosen is None or check_mode:
        return chosen
    manifest = {k: v for k, v in chosen.items() if k not in ("intact", "path")}

    def write(tar):
        _add_manifest(tar, manifest)
        for relative, expected in sorted(manifest["files"].items()):
            path = os.path.join(chosen["path"], FILES, relative)
            with open(path, "rb") as raw:
                size = os.fstat(raw.fileno()).st_size
                if size != expected["size"]:
                    raise _corrupt(chosen["path"], relative, None, size, expected)
                reader = _HashingReader(raw)
                _add_member(tar, FILES + "/" + relative, reader, size)
            if reader.digest.hexdigest() != expected["sha256"]:
                raise _corrupt(chosen["path"], relative, reader.digest.hexdigest(), size, expected)
        return chosen

    return _write_bundle(bundle, write)


def _corrupt(where, relative, digest, size, expected):
    return SnapshotError("Snapshot %s is corrupt: %s has sha256 %s (%d bytes), the manifest says %s (%d bytes)"
                         % (where, relative, (digest or "?")[:16], size, expected["sha256"][:16], expected["size"]),
                         hint="Restore an older snapshot with the snapshot option")


def _member_path(bundle, name):
    """The data path of a bundle member files/<path>, refused unless it stays below files/."""
    relative = name[len(FILES) + 1:]
    parts = relative.split("/")
    if not name.startswith(FILES + "/") or not relative or relative.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise SnapshotError("Bundle %s holds a member outside files/: %r" % (bundle, name),
                            hint="The bundle was not written by demiurge.gateway; take the snapshot again")
    return relative


def read_bundle(bundle, organization, staging):
    """Unpack a bundle's files into staging (None: only check them) while hashing; return its
    manifest once it is intact, names `organization`, and matches every file byte for byte."""
    manifest, found = None, {}
    try:
        with tarfile.open(bundle, mode="r|") as tar:
            for member in tar:
                if member.name == MANIFEST and member.isfile() and manifest is None:
                    if member.size > _MANIFEST_MAX_BYTES:
                        raise SnapshotError("Bundle %s has a manifest of %d bytes" % (bundle, member.size),
                                            hint="The bundle was not written by demiurge.gateway; take the snapshot again")
                    manifest = json.loads(tar.extractfile(member).read())
                    continue
                if not member.isfile():
                    raise SnapshotError("Bundle %s holds %r, which is not a regular file" % (bundle, member.name),
                                        hint="The bundle was not written by demiurge.gateway; take the snapshot again")
                relative = _member_path(bundle, member.name)
                if relative in found:
                    raise SnapshotError("Bundle %s holds %s twice" % (bundle, relative),
                                        hint="The bundle was not written by demiurge.gateway; take the snapshot again")
                found[relative] = _unpack(tar.extractfile(member), os.path.join(staging, relative) if staging else None)
    except (tarfile.TarError, EOFError, ValueError) as exc:
        raise SnapshotError("Bundle %s is truncated or damaged: %s" % (bundle, exc),
                            hint="Nothing was written from it; take the snapshot again") from exc
    _check_bundle(bundle, organization, manifest, found)
    if staging:
        for relative, expected in manifest["files"].items():
            os.chmod(os.path.join(staging, relative), int(expected.get("mode", "0600"), 8))
    return manifest


def _unpack(source, target):
    """(sha256 hex, size) of a member, written to target (0600, fsynced) unless target is None."""
    digest, size = hashlib.sha256(), 0
    writer = None
    if target is not None:
        makedirs_private(os.path.dirname(target))
        writer = os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
    try:
        for chunk in iter(lambda: source.read(_CHUNK), b""):
            digest.update(chunk)
            size += len(chunk)
            if writer:
                writer.write(chunk)
        if writer:
            writer.flush()
            os.fsync(writer.fileno())
    finally:
        if writer:
            writer.close()
    return digest.hexdigest(), size


def _check_bundle(bundle, organization, manifest, found):
    damaged = "The bundle was damaged on its way or not written by demiurge.gateway; nothing was written from it, take the snapshot again"
    if not isinstance(manifest, dict) or manifest.get("checksum") != manifest_checksum(manifest):
        raise SnapshotError("Bundle %s has no intact manifest" % bundle, hint=damaged)
    if manifest.get("organization") != organization_id(organization):
        raise SnapshotError("Bundle %s holds organization %s's data, not %s's" % (bundle, manifest.get("organization"), organization),
                            hint="Never move one organization's bundle to another: check the task's organization")
    listed = manifest.get("files", {})
    if set(found) != set(listed):
        raise SnapshotError("Bundle %s does not hold exactly the files its manifest lists (%d extra, %d missing)"
                            % (bundle, len(set(found) - set(listed)), len(set(listed) - set(found))), hint=damaged)
    for relative, expected in sorted(listed.items()):
        digest, size = found[relative]
        if (digest, size) != (expected["sha256"], expected["size"]):
            raise _corrupt(bundle, relative, digest, size, expected)


def store_bundle(bundle, storage, organization, keep, allow_shrink, check_mode):
    """Keep a bundle's snapshot in storage, checked file by file; return (manifest, pruned ids,
    previous manifest or None, stored). A snapshot storage already holds, or one whose files equal
    the newest intact snapshot's, is not stored again (the newest is returned)."""
    if keep < 1:
        raise InvalidInputError("keep must be at least 1", hint="Keep one or more snapshots")
    history = list_snapshots(storage, organization)
    previous = next((m for m in history if m["intact"]), None)
    if check_mode:
        manifest = read_bundle(bundle, organization, None)
        return manifest, [], previous, not any(m["id"] == manifest["id"] for m in history)
    base = org_dir(storage, organization)
    makedirs_private(base)
    staging = os.path.join(base, ".bundle-%s.tmp" % _new_id())
    makedirs_private(os.path.join(staging, FILES))
    try:
        manifest = read_bundle(bundle, organization, os.path.join(staging, FILES))
        if any(m["id"] == manifest["id"] for m in history):
            shutil.rmtree(staging)
            return manifest, [], previous, False
        if previous is not None and previous.get("files") == manifest["files"]:
            shutil.rmtree(staging)
            return previous, [], previous, False
        if not allow_shrink:
            _refuse_shrink(previous, manifest.get("projects", []), organization)
        _write_manifest(staging, manifest)
        _settle(staging, base, manifest["id"])
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest, _prune(storage, organization, keep), previous, True


def restore_bundle(bundle, data_dir, organization, check_mode):
    """Restore a bundle's snapshot into data_dir (checked file by file before the swap); return
    (manifest, changed)."""
    if check_mode:
        manifest = read_bundle(bundle, organization, None)
        return manifest, not matches(data_dir, manifest)
    box = {}

    def fill(staging):
        box["manifest"] = read_bundle(bundle, organization, staging)
        return not matches(data_dir, box["manifest"])

    changed = _swap_in(data_dir, fill)
    return box["manifest"], changed
