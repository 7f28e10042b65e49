"""Snapshot and restore time and throughput for a gateway holding 100 projects of about 50 MB.

Usage (from the repository root):
    .venv/bin/python benchmarks/snapshot.py [--projects 100] [--megabytes 50] [--rounds 5]

Builds a gateway data directory of random binary Yjs state (one document and a few update files per
project) plus a state file, then times take_snapshot (copy, hash, fsync, rename) and
restore_snapshot (copy, verify, fsync, swap). Each round changes one project so a new snapshot is
really written. Reports medians and MB/s.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / ".build" / "collections"))
from ansible_collections.demiurge.gateway.plugins.module_utils._snapshot import restore_snapshot, take_snapshot  # noqa: E402


def build(root, projects, total_bytes):
    per_project = total_bytes // projects
    for index in range(projects):
        folder = root / "projects" / ("project-%03d" % index)
        folder.mkdir(parents=True)
        (folder / "doc.yjs").write_bytes(os.urandom(per_project * 3 // 4))
        for update in range(4):
            (folder / ("update-%04d.bin" % update)).write_bytes(os.urandom(per_project // 16))
    (root / "state.json").write_text('{"permissions": {}, "oauth_clients": [], "tokens": {}, "container_tokens": {}}')
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--megabytes", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="snapshot-bench-"))
    organization = str(uuid.uuid4())
    try:
        data = work / "gateway-a"
        size = build(data, args.projects, args.megabytes << 20)
        storage = str(work / "org-data")
        pushes, restores = [], []
        for round_no in range(args.rounds):
            (data / "projects" / "project-000" / "update-0000.bin").write_bytes(os.urandom(4096 + round_no))
            started = time.perf_counter()
            take_snapshot(str(data), storage, organization, "bench", 2, False, False)
            pushes.append(time.perf_counter() - started)
            target = work / "gateway-b"
            started = time.perf_counter()
            restore_snapshot(str(target), storage, organization, None, False)
            restores.append(time.perf_counter() - started)
        megabytes = size / (1 << 20)
        print("%d projects, %.1f MB, %d files per snapshot" % (args.projects, megabytes, args.projects * 5 + 1))
        for label, samples in (("snapshot", pushes), ("restore", restores)):
            median = statistics.median(samples)
            print("%-9s median %7.0f ms  %6.0f MB/s  (min %.0f, max %.0f ms)" % (
                label, median * 1000, megabytes / median, min(samples) * 1000, max(samples) * 1000))
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
