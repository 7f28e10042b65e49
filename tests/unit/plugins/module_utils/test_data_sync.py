"""The snapshot modules' bodies on real files; the pool check of gateway_snapshot scripted."""

import json
import os
import shutil
import time

import pytest

from ansible_collections.demiurge.gateway.plugins.module_utils import _data_sync, _snapshot
from ansible_collections.demiurge.gateway.plugins.module_utils._module import Call
from ansible_collections.demiurge.gateway.plugins.module_utils._snapshot import SnapshotError, list_snapshots

ORG = "0b5e9b7c-1a2b-4c3d-8e9f-001122334455"


@pytest.fixture
def gateway(tmp_path):
    data = tmp_path / "data"
    (data / "projects" / "p-1").mkdir(parents=True)
    (data / "projects" / "p-1" / "doc.yjs").write_bytes(b"\x01\x02yjs")
    (data / "state.json").write_text('{"tokens": ["t"]}')
    return {"data_dir": str(data), "storage_dir": str(tmp_path / "storage"), "organization": ORG.upper()}


def snapshot(gateway, live="alloc-1", check_mode=False, **extra):
    params = dict(gateway, allocation_id="alloc-1", keep=5, allow_shrink=False, verify_allocation=live is not None, **extra)
    return _data_sync.snapshot_body(Call(params, check_mode, True, None))


@pytest.fixture(autouse=True)
def pool(monkeypatch):
    """The organization's live allocation, as the pool would answer: alloc-1."""
    live = {"id": "alloc-1"}

    class Transaction:
        def __init__(self, params, check_mode):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def execute(self, sql, args=None):
            if "og.status = 'active'" in sql:
                self.rows = live["active"]
                return self
            if sql.startswith("INSERT INTO gateway_events"):
                live.setdefault("events", []).append(args)
                return self
            if "ANY(" in sql:
                self.asked = args[0]
                return self
            assert args == (ORG,), "the canonical id is what the pool is asked about"
            return self

        def fetchone(self):
            return (live["id"],) if live["id"] else None

        def fetchall(self):
            if hasattr(self, "rows"):
                return self.rows
            answers = [(organization, live.get(organization, live["id"] if organization == ORG else "alloc-" + organization[4:8]))
                       for organization in self.asked]
            return [(organization, answer) for organization, answer in answers if answer]

    monkeypatch.setattr(_data_sync, "Transaction", Transaction)
    return live


def test_unchanged_data_is_not_pushed_again(gateway):
    first = snapshot(gateway)
    assert first["changed"] and first["snapshot"]["organization"] == ORG
    assert not snapshot(gateway)["changed"]
    with open(os.path.join(gateway["data_dir"], "state.json"), "w") as handle:
        handle.write('{"tokens": ["u"]}')
    assert snapshot(gateway)["changed"], "same size, other content"
    assert len(list_snapshots(gateway["storage_dir"], ORG)) == 2


def test_a_stale_allocation_may_not_push(gateway, pool):
    pool["id"] = "alloc-2"
    with pytest.raises(SnapshotError, match="is not organization .* live allocation"):
        snapshot(gateway)
    assert list_snapshots(gateway["storage_dir"], ORG) == []


def test_restore_into_a_gateway_that_holds_it_changes_nothing(gateway, tmp_path):
    snapshot(gateway)
    call = Call(dict(gateway, data_dir=str(tmp_path / "other"), snapshot=None), False, True, None)
    assert _data_sync.restore_body(call)["changed"]
    assert not _data_sync.restore_body(call)["changed"]


def test_restore_refuses_a_damaged_newest_snapshot_through_the_module(gateway, tmp_path):
    snapshot(gateway)
    manifest_path = os.path.join(list_snapshots(gateway["storage_dir"], ORG)[0]["path"], "manifest.json")
    manifest = json.load(open(manifest_path))
    manifest["file_count"] += 1
    json.dump(manifest, open(manifest_path, "w"))
    call = Call(dict(gateway, data_dir=str(tmp_path / "other"), snapshot=None), False, True, None)
    with pytest.raises(SnapshotError, match="damaged manifest"):
        _data_sync.restore_body(call)
    assert not (tmp_path / "other").exists()


def test_check_mode_pushes_nothing(gateway):
    assert snapshot(gateway, check_mode=True)["changed"]
    assert list_snapshots(gateway["storage_dir"], ORG) == []


def test_unchanged_data_is_not_read_again(gateway, monkeypatch):
    """The note beside the data answers for it until something changes."""
    monkeypatch.setattr(_snapshot, "_RACY_NS", 0)
    assert snapshot(gateway)["changed"]
    real = _snapshot.matches
    monkeypatch.setattr(_snapshot, "matches", refuse_to_read)
    assert not snapshot(gateway)["changed"]
    time.sleep(0.02)  # past the file system's clock tick
    with open(os.path.join(gateway["data_dir"], "state.json"), "r+") as handle:
        handle.write('{"tokens": ["u"]}')  # same size, same names: only its ctime and mtime say so
    monkeypatch.setattr(_snapshot, "matches", real)
    assert snapshot(gateway)["changed"]


def refuse_to_read(data_dir, manifest):
    raise AssertionError("the data was read although nothing changed")


@pytest.mark.parametrize("change", ["another organization", "another newest snapshot", "a new project", "a removed file"])
def test_the_note_is_not_trusted_once_anything_differs(gateway, monkeypatch, change):
    monkeypatch.setattr(_snapshot, "_RACY_NS", 0)
    snapshot(gateway)
    time.sleep(0.02)
    if change == "another organization":
        note = _snapshot._state_path(gateway["data_dir"])
        body = json.load(open(note))
        json.dump(dict(body, organization="1" + ORG[1:]), open(note, "w"))
    elif change == "another newest snapshot":
        note = _snapshot._state_path(gateway["data_dir"])
        body = json.load(open(note))
        json.dump(dict(body, snapshot="20200101T000000.000000Z"), open(note, "w"))
    elif change == "a new project":
        os.mkdir(os.path.join(gateway["data_dir"], "projects", "p-2"))
        open(os.path.join(gateway["data_dir"], "projects", "p-2", "doc.yjs"), "wb").close()
    else:
        os.unlink(os.path.join(gateway["data_dir"], "projects", "p-1", "doc.yjs"))
    read = []
    real = _snapshot.matches
    monkeypatch.setattr(_snapshot, "matches", lambda *args: read.append(1) or real(*args))
    result = snapshot(gateway)
    assert read, "the data was compared"
    assert result["changed"] == (change in ("a new project", "a removed file"))


def test_a_fresh_note_is_not_trusted(gateway, monkeypatch):
    """Within _RACY_NS of the note a write may share its timestamps: the data is read."""
    snapshot(gateway)
    monkeypatch.setattr(_snapshot, "matches", refuse_to_read)
    with pytest.raises(AssertionError, match="was read"):
        snapshot(gateway)


def test_check_mode_leaves_no_note(gateway):
    snapshot(gateway, check_mode=True)
    assert not os.path.exists(_snapshot._state_path(gateway["data_dir"]))


def make_gateway(root, name, content):
    data = root / name / "data"
    (data / "projects" / "p-1").mkdir(parents=True)
    (data / "projects" / "p-1" / "doc.yjs").write_bytes(content)
    return str(data)


def organization(number):
    return "%08d-1a2b-4c3d-8e9f-001122334455" % number


def test_a_batch_pushes_what_changed_and_fails_only_its_bad_members(tmp_path, pool):
    storage = str(tmp_path / "storage")
    allocations = [{"organization": organization(n), "allocation_id": "alloc-%04d" % n,
                    "data_dir": make_gateway(tmp_path, "gw-%d" % n, b"v1-%d" % n)} for n in range(5)]
    params = {"allocations": allocations, "storage_dir": storage, "keep": 5, "allow_shrink": False, "verify_allocation": True}
    first = _data_sync.snapshot_body(Call(params, False, True, None))
    assert first["changed_organizations"] == sorted(organization(n) for n in range(5))
    assert len(pool["events"]) == 5, "one snapshot.stored event each"
    # One gateway lost a project (refused), one organization moved on (stale), one changed.
    shutil.rmtree(os.path.join(allocations[1]["data_dir"], "projects", "p-1"))
    pool[organization(2)] = "alloc-moved"
    with open(os.path.join(allocations[3]["data_dir"], "projects", "p-1", "doc.yjs"), "wb") as handle:
        handle.write(b"v2")
    with pytest.raises(SnapshotError, match="2 of 5 snapshots failed") as failed:
        _data_sync.snapshot_body(Call(params, False, True, None))
    details = failed.value.details
    assert details["changed_organizations"] == [organization(3)]
    assert sorted(details["failed_organizations"]) == [organization(1), organization(2)]
    assert "would drop projects" in details["failed_organizations"][organization(1)]
    assert "alloc-moved" in details["failed_organizations"][organization(2)]
    assert len(list_snapshots(storage, organization(2))) == 1, "a stale gateway's data is not kept"
    assert len(list_snapshots(storage, organization(3))) == 2
    assert len(pool["events"]) == 6
    assert details["unchanged"] == 2 and list(details["snapshots"]) == [organization(3)]


def test_live_allocations_are_read_from_the_pool_and_split_by_host(tmp_path, pool):
    storage = str(tmp_path / "storage")
    pool["active"] = [(organization(1), "alloc-0001", "gw-1", make_gateway(tmp_path, "gw-1", b"a"), "localhost"),
                      (organization(2), "alloc-0002", "gw-2", "/srv/gw-2/data", "gwhost1"),
                      (organization(3), "alloc-0003", "gw-3", None, "localhost")]
    params = {"live_allocations": True, "host": "localhost", "storage_dir": storage, "keep": 5, "allow_shrink": False,
              "verify_allocation": True}
    with pytest.raises(SnapshotError, match="1 of 2 snapshots failed") as failed:
        _data_sync.snapshot_body(Call(params, False, True, None))
    details = failed.value.details
    assert details["changed_organizations"] == [organization(1)]
    assert "gw-3 has no data_dir" in details["failed_organizations"][organization(3)]
    assert details["elsewhere"] == [{"organization": organization(2), "allocation_id": "alloc-0002",
                                     "data_dir": "/srv/gw-2/data", "host": "gwhost1"}]
    assert len(pool["events"]) == 1, "the one new snapshot's event"


def test_a_batch_in_check_mode_writes_nothing(tmp_path):
    storage = str(tmp_path / "storage")
    allocations = [{"organization": organization(1), "allocation_id": "alloc-0001", "data_dir": make_gateway(tmp_path, "gw", b"x")}]
    params = {"allocations": allocations, "storage_dir": storage, "keep": 5, "allow_shrink": False, "verify_allocation": True}
    result = _data_sync.snapshot_body(Call(params, True, True, None))
    assert result["changed_organizations"] == [organization(1)]
    assert not os.path.exists(storage)


def test_a_snapshot_taken_while_the_allocation_ended_is_discarded(tmp_path, pool, monkeypatch):
    """The gateway may have been wiped and handed on while its data was copied: what was copied
    must never be restored to the organization."""
    storage = str(tmp_path / "storage")
    allocations = [{"organization": organization(n), "allocation_id": "alloc-%04d" % n,
                    "data_dir": make_gateway(tmp_path, "gw-%d" % n, b"v1-%d" % n)} for n in range(3)]
    real = _data_sync.take_snapshot

    def released_meanwhile(data_dir, storage_dir, org, *args):
        taken = real(data_dir, storage_dir, org, *args)
        if org == organization(1):
            pool[org] = "alloc-next"
        return taken

    monkeypatch.setattr(_data_sync, "take_snapshot", released_meanwhile)
    params = {"allocations": allocations, "storage_dir": storage, "keep": 5, "allow_shrink": False, "verify_allocation": True}
    with pytest.raises(SnapshotError, match="1 of 3 snapshots failed") as failed:
        _data_sync.snapshot_body(Call(params, False, True, None))
    assert "ended while its data was copied" in failed.value.details["failed_organizations"][organization(1)]
    assert list_snapshots(storage, organization(1)) == [], "nothing of it is kept"
    assert all(len(list_snapshots(storage, organization(n))) == 1 for n in (0, 2))
    assert len(pool["events"]) == 2


def test_one_push_while_the_allocation_ended_keeps_nothing(gateway, pool, monkeypatch):
    real = _data_sync.take_snapshot

    def released_meanwhile(*args):
        taken = real(*args)
        pool["id"] = "alloc-2"
        return taken

    monkeypatch.setattr(_data_sync, "take_snapshot", released_meanwhile)
    with pytest.raises(SnapshotError, match="ended while its data was copied"):
        snapshot(gateway)
    assert list_snapshots(gateway["storage_dir"], ORG) == [] and "events" not in pool
