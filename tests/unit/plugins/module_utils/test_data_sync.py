"""The snapshot modules' bodies on real files; the pool check of gateway_snapshot scripted."""

import json
import os

import pytest

from ansible_collections.demiurge.gateway.plugins.module_utils import _data_sync
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

        def execute(self, sql, args):
            if sql.startswith("INSERT INTO gateway_events"):
                live.setdefault("events", []).append(args)
                return self
            assert args == (ORG,), "the canonical id is what the pool is asked about"
            return self

        def fetchone(self):
            return (live["id"],) if live["id"] else None

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
