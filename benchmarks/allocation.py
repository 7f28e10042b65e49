"""Median wall time of allocate.yml and release.yml through ansible-runner, with a breakdown.

Usage (from the repository root, with the local stack up):
    .venv/bin/python benchmarks/allocation.py [--runs 10] [--lab-inventory /run/demiurge-lab/lab-001/inventory]
                                              [--real-gateway ../shared/realgw/gateway.js]

DEMIURGE_ENV and DEMIURGE_PORT_BASE pick the stack, as for the playbooks. Each run allocates a new
organization, then releases it, as AWX would run the playbooks; then a playbook of one `debug`
task runs the same way, which is the floor any playbook pays here. With --lab-inventory (a lab
built by lab_hosts and converged by platform_hosts, docs/howto-lab-hosts.md), each run also
allocates and releases on those real hosts, and runs a playbook of one `ping` on the first edge
over SSH, the floor of a playbook that reaches a host. Wall time is measured around
ansible_runner.run and split by ansible's events. With --real-gateway (a gateway build, the
platform's gateway.js), three real gateways (rb-001 to rb-003, role gateway_standin with the build)
join the stack's pool for the run, and each round also allocates and releases on a real gateway:
the stand-ins and the real gateways take turns being the only ready ones (the others quarantined
meanwhile, as "benchmark: set aside", and put back at the end).

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
import psycopg

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
ONE_SSH_TASK_PLAYBOOK = """\
- name: One task over SSH
  hosts: edges[0]
  gather_facts: false
  tasks:
    - name: Ping the first edge
      ansible.builtin.ping:
"""


REAL_NAMES = ["rb-001", "rb-002", "rb-003"]
SET_ASIDE = "benchmark: set aside"


def _state_path(*parts):
    return str(Path(os.environ.get("LOCAL_DEV_DIR", "/var/lib/demiurge"), os.environ.get("DEMIURGE_ENV", "dev-001"), *parts))


def pool():
    port_base = int(os.environ.get("DEMIURGE_PORT_BASE", "15000"))
    with open(_state_path("secrets", "pool_db_password")) as handle:
        password = handle.read().strip()
    return psycopg.connect(host="127.0.0.1", port=port_base + 432, user="demiurge", password=password, dbname="demiurge",
                           autocommit=True)


def real_gateways(build, state):
    """Run (or stop) the real gateways with the collection's own role."""
    port_base = int(os.environ.get("DEMIURGE_PORT_BASE", "15000")) + 750
    play = ("- name: Real gateways\n  hosts: localhost\n  gather_facts: false\n  roles:\n"
            "    - role: demiurge.gateway.gateway_standin\n      gateway_standin_names: %s\n"
            "      gateway_standin_name_prefix: rb-\n      gateway_standin_port_base: %d\n"
            "      gateway_standin_build: %s\n      gateway_standin_state: %s\n" % (REAL_NAMES, port_base, build, state))
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as playbook:
        playbook.write(play)
        playbook.flush()
        run_playbook(playbook.name, {}, defaultdict(list))


def only_ready(real):
    """Leave ready only the real gateways (real=True) or only the stand-ins."""
    with pool() as conn:
        conn.execute("UPDATE gateways SET status = 'ready', status_reason = NULL, updated_at = now() "
                     "WHERE status = 'quarantined' AND status_reason = %s", (SET_ASIDE,))
        conn.execute("UPDATE gateways SET status = 'quarantined', status_reason = %s, updated_at = now() "
                     "WHERE status = 'ready' AND (name LIKE 'rb-%%') <> %s", (SET_ASIDE, real))


def retire_real_gateways():
    with pool() as conn:
        conn.execute("UPDATE gateways SET status = 'ready', status_reason = NULL, updated_at = now() "
                     "WHERE status = 'quarantined' AND status_reason = %s AND name NOT LIKE 'rb-%%'", (SET_ASIDE,))
        conn.execute("UPDATE gateways SET status = 'retired', updated_at = now() WHERE name LIKE 'rb-%' "
                     "AND status IN ('ready', 'quarantined', 'starting')")


def now():
    return datetime.now(timezone.utc)


def event_time(event):
    """An event's creation time; ansible-runner writes UTC, with or without the offset."""
    created = datetime.fromisoformat(event["created"])
    return created if created.tzinfo else created.replace(tzinfo=timezone.utc)


def run_playbook(playbook, extravars, segments, inventory=None):
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
            project_dir=str(REPO), inventory=inventory or str(REPO / "inventories" / "local"), extravars=extravars,
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
    parser.add_argument("--lab-inventory", help="the inventory directory of a lab converged by platform_hosts")
    parser.add_argument("--real-gateway", help="a gateway build (gateway.js) to measure against as well")
    args = parser.parse_args()
    os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".build" / "collections"))
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]
    names = ["allocate.yml", "release.yml", "one debug task"]
    if args.lab_inventory:
        names += ["allocate.yml on the lab's hosts", "release.yml on the lab's hosts", "one ping over SSH"]
    if args.real_gateway:
        names += ["allocate.yml, real gateway", "release.yml, real gateway"]
        real_gateways(os.path.abspath(args.real_gateway), "started")
    results = {name: defaultdict(list) for name in names}
    try:
        rounds(args, results)
    finally:
        if args.real_gateway:
            real_gateways(os.path.abspath(args.real_gateway), "stopped")
            retire_real_gateways()
    for title, segments in results.items():
        report(title, segments)


def rounds(args, results):
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as one_task, tempfile.NamedTemporaryFile("w", suffix=".yml") as one_ssh:
        one_task.write(ONE_TASK_PLAYBOOK)
        one_task.flush()
        one_ssh.write(ONE_SSH_TASK_PLAYBOOK)
        one_ssh.flush()
        # Interleaved, so that the machine's drift weighs on every kind of run alike.
        for dummy in range(args.runs):
            organization = {"organization_id": str(uuid.uuid4())}
            if args.real_gateway:
                only_ready(real=False)
            run_playbook("demiurge.gateway.allocate", organization, results["allocate.yml"])
            run_playbook("demiurge.gateway.release", organization, results["release.yml"])
            if args.real_gateway:
                only_ready(real=True)
                run_playbook("demiurge.gateway.allocate", organization, results["allocate.yml, real gateway"])
                run_playbook("demiurge.gateway.release", organization, results["release.yml, real gateway"])
            run_playbook(one_task.name, {}, results["one debug task"])
            if args.lab_inventory:
                run_playbook("demiurge.gateway.allocate", organization, results["allocate.yml on the lab's hosts"], args.lab_inventory)
                run_playbook("demiurge.gateway.release", organization, results["release.yml on the lab's hosts"], args.lab_inventory)
                run_playbook(one_ssh.name, {}, results["one ping over SSH"], args.lab_inventory)


if __name__ == "__main__":
    main()
