"""Snapshots on real files: integrity, atomicity, history, safety."""

import json
import os
import stat

import pytest

from ansible_collections.demiurge.gateway.plugins.module_utils import _snapshot
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import InvalidInputError
from ansible_collections.demiurge.gateway.plugins.module_utils._snapshot import (
    SnapshotError,
    list_snapshots,
    matches,
    restore_snapshot,
    take_snapshot,
)

ORG = "0b5e9b7c-1a2b-4c3d-8e9f-001122334455"


def gateway_data(root, projects=("p-1", "p-2", "p-3"), salt=b""):
    """A gateway data directory: binary Yjs updates per project and a state file with secrets."""
    for index, project in enumerate(projects):
        folder = root / "projects" / project
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "doc.yjs").write_bytes(bytes(range(256)) * (index + 3) + salt)
        (folder / "updates-0001.bin").write_bytes(os.urandom(1000 + index))
    (root / "state.json").write_text(json.dumps({"permissions": {"u1": "admin"}, "oauth_clients": ["c1"],
                                                 "tokens": {"t1": "secret-token"}, "container_tokens": {"uc-1": "x"}}))
    return root


def tree(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def storage(tmp_path):
    return str(tmp_path / "org-data")


def push(data, storage, allocation="alloc-1", keep=5, allow_shrink=False, check_mode=False):
    return take_snapshot(str(data), storage, ORG, allocation, keep, allow_shrink, check_mode)


def test_push_then_restore_elsewhere_is_byte_for_byte(tmp_path, storage):
    source = gateway_data(tmp_path / "gw-a")
    manifest, pruned, previous = push(source, storage)
    assert previous is None and pruned == [] and manifest["file_count"] == 7 and manifest["projects"] == ["p-1", "p-2", "p-3"]
    target = tmp_path / "gw-b"
    target.mkdir()
    (target / "leftover.txt").write_text("from another organization")
    restore_snapshot(str(target), storage, ORG, None, False)
    assert tree(target) == tree(source)
    assert matches(str(target), list_snapshots(storage, ORG)[0])


def test_storage_is_private(tmp_path, storage):
    manifest, dummy, dummy2 = push(gateway_data(tmp_path / "gw"), storage)
    for path, dirs, files in os.walk(storage):
        if path != storage:
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o700, path
        for name in files:
            assert stat.S_IMODE(os.stat(os.path.join(path, name)).st_mode) == 0o600


def corrupt(storage, mutate):
    snapshot = list_snapshots(storage, ORG)[0]["path"]
    victim = os.path.join(snapshot, "files", "projects", "p-2", "doc.yjs")
    mutate(victim)


@pytest.mark.parametrize("damage,message", [
    (lambda path: open(path, "r+b").write(b"\xff"), "is corrupt"),
    (lambda path: os.truncate(path, 10), "is corrupt"),
    (os.unlink, "does not hold exactly the files"),
])
def test_damaged_snapshot_is_refused_and_the_gateway_keeps_its_data(tmp_path, storage, damage, message):
    push(gateway_data(tmp_path / "gw-a"), storage)
    corrupt(storage, damage)
    target = gateway_data(tmp_path / "gw-b", salt=b"other org")
    before = tree(target)
    with pytest.raises(SnapshotError, match=message):
        restore_snapshot(str(target), storage, ORG, None, False)
    assert tree(target) == before
    assert not any(name.startswith(".") and not name.endswith(_snapshot.STATE_SUFFIX) for name in os.listdir(tmp_path)), \
        "no staging left behind"


def test_damaged_manifest_is_refused(tmp_path, storage):
    push(gateway_data(tmp_path / "gw-a"), storage)
    manifest_path = os.path.join(list_snapshots(storage, ORG)[0]["path"], "manifest.json")
    manifest = json.load(open(manifest_path))
    manifest["files"]["state.json"]["size"] += 1
    json.dump(manifest, open(manifest_path, "w"))
    with pytest.raises(SnapshotError, match="damaged manifest"):
        restore_snapshot(str(tmp_path / "gw-b"), storage, ORG, list_snapshots(storage, ORG)[0]["id"], False)


def test_push_that_dies_midway_leaves_the_previous_snapshot_restorable(tmp_path, storage, monkeypatch):
    source = gateway_data(tmp_path / "gw-a")
    push(source, storage)
    first = tree(source)
    gateway_data(source, projects=("p-1", "p-2", "p-3", "p-4"), salt=b"newer")
    copies = []
    real_copy = _snapshot.copy_hashing

    def dies_on_third(source_path, target):
        copies.append(source_path)
        if len(copies) == 3:
            raise OSError("disk full")
        return real_copy(source_path, target)

    monkeypatch.setattr(_snapshot, "copy_hashing", dies_on_third)
    with pytest.raises(OSError):
        push(source, storage)
    monkeypatch.undo()
    # A push killed outright leaves its staging directory behind; it is never taken for a snapshot.
    os.makedirs(os.path.join(storage, ORG, ".20991231T000000.000000Z.tmp", "files"))
    assert len(list_snapshots(storage, ORG)) == 1
    target = tmp_path / "gw-b"
    restore_snapshot(str(target), storage, ORG, None, False)
    assert tree(target) == first


def test_shrinking_snapshot_is_refused_unless_allowed(tmp_path, storage):
    source = gateway_data(tmp_path / "gw")
    push(source, storage)
    for path in (source / "projects" / "p-3").iterdir():
        path.unlink()
    (source / "projects" / "p-3").rmdir()
    with pytest.raises(SnapshotError, match="would drop projects present in snapshot .*: p-3"):
        push(source, storage)
    assert len(list_snapshots(storage, ORG)) == 1
    push(source, storage, allow_shrink=True)
    assert list_snapshots(storage, ORG)[0]["projects"] == ["p-1", "p-2"]


def test_history_keeps_the_newest(tmp_path, storage):
    source = gateway_data(tmp_path / "gw")
    ids = []
    for round_no in range(4):
        (source / "state.json").write_text('{"round": %d}' % round_no)
        manifest, pruned, dummy = push(source, storage, keep=2)
        ids.append(manifest["id"])
    assert [m["id"] for m in list_snapshots(storage, ORG)] == ids[:1:-1]
    with pytest.raises(InvalidInputError):
        push(source, storage, keep=0)


def test_check_mode_writes_nothing(tmp_path, storage):
    push(gateway_data(tmp_path / "gw"), storage, check_mode=True)
    assert not os.path.exists(storage)


def test_no_snapshot_yet_restores_nothing(tmp_path, storage):
    assert restore_snapshot(str(tmp_path / "gw"), storage, ORG, None, False) is None


def test_matches_compares_content_not_only_names_and_sizes(tmp_path, storage):
    data = gateway_data(tmp_path / "gw-a")
    manifest, dummy, dummy2 = push(data, storage)
    assert matches(str(data), manifest)
    doc = data / "projects" / "p-1" / "doc.yjs"
    content = bytearray(doc.read_bytes())
    content[0] ^= 0xFF
    doc.write_bytes(bytes(content))
    assert not matches(str(data), manifest), "same names and sizes, other bytes"


def test_file_modes_are_recorded_and_restored(tmp_path, storage):
    data = gateway_data(tmp_path / "gw-a")
    (data / "state.json").chmod(0o640)
    (data / "projects" / "p-1" / "doc.yjs").chmod(0o604)
    manifest, dummy, dummy2 = push(data, storage)
    assert manifest["files"]["state.json"]["mode"] == "0640"
    target = tmp_path / "gw-b"
    restore_snapshot(str(target), storage, ORG, None, False)
    assert stat.S_IMODE((target / "state.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((target / "projects" / "p-1" / "doc.yjs").stat().st_mode) == 0o604


def test_a_damaged_newest_snapshot_is_refused_not_skipped(tmp_path, storage):
    push(gateway_data(tmp_path / "gw-a", projects=("p-1",)), storage, allocation="alloc-1")
    push(gateway_data(tmp_path / "gw-a", projects=("p-1", "p-2")), storage, allocation="alloc-2")
    newest = list_snapshots(storage, ORG)[0]
    manifest_path = os.path.join(newest["path"], "manifest.json")
    manifest = json.load(open(manifest_path))
    manifest["projects"] = ["p-1", "p-2", "p-3"]
    json.dump(manifest, open(manifest_path, "w"))
    target = tmp_path / "gw-b"
    with pytest.raises(SnapshotError, match="damaged manifest.*nothing was restored"):
        restore_snapshot(str(target), storage, ORG, None, False)
    assert not target.exists()
    older = list_snapshots(storage, ORG)[1]
    assert restore_snapshot(str(target), storage, ORG, older["id"], False)["id"] == older["id"], "on purpose, by id"
