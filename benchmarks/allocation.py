"""Median wall time of allocate.yml and release.yml through ansible-runner, with a per-step breakdown.

Usage (from the repository root, with the local stack up):
    .venv/bin/python benchmarks/allocation.py [--runs 10]

Each run allocates a new organization, then releases it, as AWX would run the playbooks. Wall time
is measured around ansible_runner.run; a step's time is the gap between its task's start event
and the next task's start event (the last task ends at the playbook's stats event).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import ansible_runner

REPO = Path(__file__).resolve().parents[1]


def run_playbook(playbook, organization, steps):
    marks = []

    def on_event(event):
        if event["event"] in ("playbook_on_task_start", "playbook_on_stats"):
            marks.append((event["event_data"].get("task", "(end)"), datetime.fromisoformat(event["created"])))
        return True

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = ansible_runner.run(
            private_data_dir=tmp, playbook="demiurge.gateway.%s" % playbook, quiet=True, event_handler=on_event,
            project_dir=str(REPO), inventory=str(REPO / "inventories" / "local" / "hosts.yml"),
            extravars={"organization_id": organization},
            envvars={"ANSIBLE_COLLECTIONS_PATH": os.environ["ANSIBLE_COLLECTIONS_PATH"],
                     "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")})
        elapsed = time.perf_counter() - started
    if result.rc != 0:
        raise SystemExit("%s failed for %s (rc %s)" % (playbook, organization, result.rc))
    for (task, at), (dummy, following) in zip(marks, marks[1:]):
        steps[task].append((following - at).total_seconds())
    return elapsed


def report(title, walls, steps):
    print("%s: median %.0f ms over %d runs (min %.0f, max %.0f)" % (
        title, statistics.median(walls) * 1000, len(walls), min(walls) * 1000, max(walls) * 1000))
    for task, values in steps.items():
        print("    %-62s %7.1f ms" % (task[:62], statistics.median(values) * 1000))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".build" / "collections"))
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]
    walls = {"allocate": [], "release": []}
    steps = {"allocate": defaultdict(list), "release": defaultdict(list)}
    for dummy in range(args.runs):
        organization = str(uuid.uuid4())
        for playbook in ("allocate", "release"):
            walls[playbook].append(run_playbook(playbook, organization, steps[playbook]))
    for playbook in ("allocate", "release"):
        report(playbook + ".yml", walls[playbook], steps[playbook])


if __name__ == "__main__":
    main()
