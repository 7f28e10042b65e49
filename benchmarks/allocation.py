"""Median wall time of allocate.yml and release.yml through ansible-runner, with a breakdown.

Usage (from the repository root, with the local stack up):
    .venv/bin/python benchmarks/allocation.py [--runs 10]

DEMIURGE_ENV and DEMIURGE_PORT_BASE pick the stack, as for the playbooks. Each run allocates a new
organization, then releases it, as AWX would run the playbooks; then a playbook of one `debug`
task runs the same way, which is the floor any playbook pays here. Wall time is measured around
ansible_runner.run and split by ansible's events:

    start       from the call until the playbook starts (runner setup, ansible-playbook's start)
    play        from the play's start until its first task starts
    <task>      from the task's start until the next task's start (the last one: until the stats)
    exit        from the stats until ansible_runner.run returns (ansible-playbook's exit, runner's close)
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import ansible_runner

REPO = Path(__file__).resolve().parents[1]
ONE_TASK_PLAYBOOK = """\
- name: One task
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Say hello
      ansible.builtin.debug:
        msg: hello
"""


def now():
    return datetime.now(timezone.utc)


def event_time(event):
    """An event's creation time; ansible-runner writes UTC, with or without the offset."""
    created = datetime.fromisoformat(event["created"])
    return created if created.tzinfo else created.replace(tzinfo=timezone.utc)


def run_playbook(playbook, extravars, segments):
    """Run one playbook; add its wall time and the length of each segment to `segments`."""
    marks = []

    def on_event(event):
        kind = event["event"]
        if kind in ("playbook_on_start", "playbook_on_play_start", "playbook_on_task_start", "playbook_on_stats"):
            label = {"playbook_on_start": "start", "playbook_on_play_start": "play",
                     "playbook_on_stats": "exit"}.get(kind) or event["event_data"]["task"]
            marks.append((label, event_time(event)))
        return True

    with tempfile.TemporaryDirectory() as tmp:
        began, started = now(), time.perf_counter()
        result = ansible_runner.run(
            private_data_dir=tmp, playbook=playbook, quiet=True, event_handler=on_event,
            project_dir=str(REPO), inventory=str(REPO / "inventories" / "local"), extravars=extravars,
            envvars={"ANSIBLE_COLLECTIONS_PATH": os.environ["ANSIBLE_COLLECTIONS_PATH"],
                     "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")})
        elapsed, ended = time.perf_counter() - started, now()
    if result.rc != 0:
        raise SystemExit("%s failed (rc %s): %s" % (playbook, result.rc, extravars))
    # "start" ends where the playbook starts; every other segment ends where the next one begins.
    bounds = [("start", began)] + marks[1:] + [("(end)", ended)]
    for (label, at), (dummy, following) in zip(bounds, bounds[1:]):
        segments[label].append((following - at).total_seconds())
    segments["wall"].append(elapsed)


def report(title, segments):
    walls = segments.pop("wall")
    print("%s: median %.0f ms over %d runs (min %.0f, max %.0f)" % (
        title, statistics.median(walls) * 1000, len(walls), min(walls) * 1000, max(walls) * 1000))
    for label, values in segments.items():
        print("    %-62s %7.1f ms" % (label[:62], statistics.median(values) * 1000))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".build" / "collections"))
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]
    results = {name: defaultdict(list) for name in ("allocate.yml", "release.yml", "one debug task")}
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as one_task:
        one_task.write(ONE_TASK_PLAYBOOK)
        one_task.flush()
        for dummy in range(args.runs):
            organization = {"organization_id": str(uuid.uuid4())}
            run_playbook("demiurge.gateway.allocate", organization, results["allocate.yml"])
            run_playbook("demiurge.gateway.release", organization, results["release.yml"])
            run_playbook(one_task.name, {}, results["one debug task"])
    for title, segments in results.items():
        report(title, segments)


if __name__ == "__main__":
    main()
