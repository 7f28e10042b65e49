"""Snapshots between hosts: a bundle written on one side is kept on the other only when intact."""

import io
import json
import os
import stat
import tarfile

import pytest

from ansible_collections.demiurge.gateway.plugins.module_utils._snapshot import (
    STATE_SUFFIX,
    SnapshotError,
    bundle_data,
    bundle_snapshot,
    list_snapshots,
    matches,
    restore_bundle,
    store_bundle,
)

from test_snapshot import ORG, gateway_data, tree

OTHER_ORG = "11111111-2222-4333-8444-555555555555"


def out(data, bundle, latest=None, allow_shrink=False, check_mode=False, organization=ORG):
    return bundle_data(str(data), str(bundle), organization, "alloc-1", latest, allow_shrink, check_mode)


def store(bundle, storage, keep=5, allow_shrink=False, check_mode=False, organization=ORG):
    return store_bundle(str(bundle), storage, organization, keep, allow_shrink, check_mode)


@pytest.fixture
def storage(tmp_path):
    return str(tmp_path / "org-data")


def latest_of(storage):
    return next(m for m in list_snapshots(storage, ORG) if m["intact"])


def test_gateway_to_storage_to_another_gateway_is_byte_for_byte(tmp_path, storage):
    source = gateway_data(tmp_path / "gw-a")
    manifest = out(source, tmp_path / "push.tar")
    assert stat.S_IMODE(os.stat(tmp_path / "push.tar").st_mode) == 0o600
    kept, pruned, previous, stored = store(tmp_path / "push.tar", storage)
    assert stored and previous is None and pruned == [] and kept["id"] == manifest["id"]
    assert latest_of(storage)["checksum"] == manifest["checksum"]
    assert bundle_snapshot(storage, ORG, None, str(tmp_path / "pull.tar"), False)["id"] == manifest["id"]
    target = tmp_path / "gw-b"
    target.mkdir()
    (target / "leftover.txt").write_text("from another organization")
    restored, changed = restore_bundle(str(tmp_path / "pull.tar"), str(target), ORG, False)
    assert changed and restored["id"] == manifest["id"]
    assert tree(target) == tree(source)
    assert restore_bundle(str(tmp_path / "pull.tar"), str(target), ORG, False)[1] is False


def test_unchanged_data_is_not_bundled_and_a_stored_bundle_is_not_stored_twice(tmp_path, storage):
    source = gateway_data(tmp_path / "gw")
    out(source, tmp_path / "push.tar")
    store(tmp_path / "push.tar", storage)
    assert out(source, tmp_path / "again.tar", latest=latest_of(storage)) is None
    assert not (tmp_path / "again.tar").exists()
    assert store(tmp_path / "push.tar", storage)[3] is False
    # Bundled without the storage's view (as a release does): equal files are not stored again.
    out(source, tmp_path / "blind.tar")
    kept, dummy, dummy2, stored = store(tmp_path / "blind.tar", storage)
    assert not stored and kept["id"] == latest_of(storage)["id"]
    assert len(list_snapshots(storage, ORG)) == 1


def rewrite(bundle, change):
    """Copy of a bundle with change(name, data) -> (name, data) or None (dropped) per member."""
    members = []
    with tarfile.open(bundle) as tar:
        for member in tar:
            members.append((member.name, tar.extractfile(member).read()))
    members = [m for m in (change(n, d) for n, d in members) if m]
    target = str(bundle) + ".changed"
    with tarfile.open(target, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return target


def flip_a_byte(name, data):
    return (name, data[:-1] + bytes([data[-1] ^ 1])) if name.endswith("doc.yjs") else (name, data)


DAMAGES = {
    "a flipped byte": flip_a_byte,
    "a missing file": lambda name, data: None if name.endswith("state.json") else (name, data),
    "a forged manifest": lambda name, data: (name, data.replace(b'"alloc-1"', b'"alloc-2"')) if name == "manifest.json" else (name, data),
    "a member outside files/": lambda name, data: ("../escape" if name.endswith("state.json") else name, data),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_bundle_is_refused_and_storage_keeps_what_it_had(tmp_path, storage, damage):
    source = gateway_data(tmp_path / "gw")
    out(source, tmp_path / "first.tar")
    store(tmp_path / "first.tar", storage)
    before = tree(tmp_path / "org-data")
    (source / "projects" / "p-1" / "doc.yjs").write_bytes(b"newer")
    out(source, tmp_path / "push.tar", latest=latest_of(storage))
    with pytest.raises(SnapshotError):
        store(rewrite(tmp_path / "push.tar", DAMAGES[damage]), storage)
    assert tree(tmp_path / "org-data") == before
    assert not os.path.exists(tmp_path / "escape")


def test_an_extra_file_in_a_bundle_is_refused(tmp_path, storage):
    out(gateway_data(tmp_path / "gw"), tmp_path / "push.tar")
    changed = rewrite(tmp_path / "push.tar", lambda name, data: (name, data))
    with tarfile.open(changed, "a") as tar:
        info = tarfile.TarInfo("files/planted.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(SnapshotError, match="1 extra"):
        store(changed, storage)
    assert list_snapshots(storage, ORG) == []


@pytest.mark.parametrize("where", ["in the first file", "in the middle", "in the manifest"])
def test_a_truncated_bundle_is_refused(tmp_path, storage, where):
    out(gateway_data(tmp_path / "gw"), tmp_path / "push.tar")
    with tarfile.open(tmp_path / "push.tar") as tar:
        members = tar.getmembers()
    member = {"in the first file": members[0], "in the middle": members[len(members) // 2], "in the manifest": members[-1]}[where]
    data = (tmp_path / "push.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[:member.offset_data + member.size // 2])
    with pytest.raises(SnapshotError):
        store(tmp_path / "cut.tar", storage)
    assert list_snapshots(storage, ORG) == []


def test_another_organizations_bundle_is_refused_on_both_ends(tmp_path, storage):
    out(gateway_data(tmp_path / "gw"), tmp_path / "push.tar", organization=OTHER_ORG)
    with pytest.raises(SnapshotError, match="not %s" % ORG):
        store(tmp_path / "push.tar", storage)
    target = tmp_path / "gw-b"
    target.mkdir()
    (target / "mine").write_text("kept")
    with pytest.raises(SnapshotError, match="not %s" % ORG):
        restore_bundle(str(tmp_path / "push.tar"), str(target), ORG, False)
    assert tree(target) == {"mine": b"kept"}


def test_a_damaged_restore_bundle_leaves_the_gateway_as_it_was(tmp_path, storage):
    out(gateway_data(tmp_path / "gw"), tmp_path / "push.tar")
    store(tmp_path / "push.tar", storage)
    bundle_snapshot(storage, ORG, None, str(tmp_path / "pull.tar"), False)
    target = tmp_path / "gw-b"
    target.mkdir()
    (target / "mine").write_text("kept")
    with pytest.raises(SnapshotError):
        restore_bundle(rewrite(tmp_path / "pull.tar", flip_a_byte), str(target), ORG, False)
    assert tree(target) == {"mine": b"kept"}
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".") and not p.endswith(STATE_SUFFIX)], "no staging left behind"


def test_a_corrupt_stored_file_is_not_bundled(tmp_path, storage):
    out(gateway_data(tmp_path / "gw"), tmp_path / "push.tar")
    store(tmp_path / "push.tar", storage)
    stored = latest_of(storage)["path"]
    path = os.path.join(stored, "files", "state.json")
    data = open(path, "rb").read()
    with open(path, "wb") as handle:
        handle.write(data.replace(b"secret", b"SECRET"))
    with pytest.raises(SnapshotError, match="corrupt"):
        bundle_snapshot(storage, ORG, None, str(tmp_path / "pull.tar"), False)
    assert not (tmp_path / "pull.tar").exists()


def test_a_shrinking_snapshot_is_refused_on_both_ends_unless_allowed(tmp_path, storage):
    source = gateway_data(tmp_path / "gw")
    out(source, tmp_path / "push.tar")
    store(tmp_path / "push.tar", storage)
    smaller = gateway_data(tmp_path / "gw-small", projects=("p-1",))
    with pytest.raises(SnapshotError, match="drop projects"):
        out(smaller, tmp_path / "small.tar", latest=latest_of(storage))
    out(smaller, tmp_path / "small.tar", latest=None)  # a bundle made without the storage's view
    with pytest.raises(SnapshotError, match="drop projects"):
        store(tmp_path / "small.tar", storage)
    assert store(tmp_path / "small.tar", storage, allow_shrink=True)[3]


def test_check_mode_writes_nothing_anywhere(tmp_path, storage):
    source = gateway_data(tmp_path / "gw")
    assert out(source, tmp_path / "push.tar", check_mode=True)["projects"] == ["p-1", "p-2", "p-3"]
    assert not (tmp_path / "push.tar").exists()
    out(source, tmp_path / "push.tar")
    manifest, dummy, dummy2, would_store = store(tmp_path / "push.tar", storage, check_mode=True)
    assert would_store and list_snapshots(storage, ORG) == []
    target = tmp_path / "gw-b"
    target.mkdir()
    assert restore_bundle(str(tmp_path / "push.tar"), str(target), ORG, True)[1] is True
    assert tree(target) == {}
    assert not matches(str(target), manifest)


def test_modes_survive_the_trip(tmp_path, storage):
    source = gateway_data(tmp_path / "gw")
    os.chmod(source / "state.json", 0o640)
    out(source, tmp_path / "push.tar")
    store(tmp_path / "push.tar", storage)
    bundle_snapshot(storage, ORG, None, str(tmp_path / "pull.tar"), False)
    target = tmp_path / "gw-b"
    restore_bundle(str(tmp_path / "pull.tar"), str(target), ORG, False)
    assert stat.S_IMODE(os.stat(target / "state.json").st_mode) == 0o640
    assert json.loads((target / "state.json").read_text())["tokens"] == {"t1": "secret-token"}


def test_a_gateway_without_any_file_makes_the_round_trip_too(tmp_path, storage):
    empty = tmp_path / "gw"
    empty.mkdir()
    manifest = out(empty, tmp_path / "push.tar")
    kept, dummy, dummy2, stored = store(tmp_path / "push.tar", storage)
    assert stored and kept["file_count"] == 0 and latest_of(storage)["id"] == manifest["id"]
    bundle_snapshot(storage, ORG, None, str(tmp_path / "pull.tar"), False)
    target = tmp_path / "gw-b"
    target.mkdir()
    (target / "leftover").write_text("x")
    restored, changed = restore_bundle(str(tmp_path / "pull.tar"), str(target), ORG, False)
    assert changed and tree(target) == {}
