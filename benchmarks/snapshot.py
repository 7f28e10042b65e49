"""Snapshot and restore time and throughput for a gateway holding 100 projects of about 50 MB.

Usage (from the repository root):
    .venv/bin/python benchmarks/snapshot.py [--projects 100] [--megabytes 50] [--rounds 5]
        [--lab-inventory /run/demiurge-lab/lab-001/inventory]

Builds a gateway data directory of random binary Yjs state (one document and a few update files per
project) plus a state file, then times take_snapshot (copy, hash, fsync, rename) and
restore_snapshot (copy, verify, fsync, swap). Each round changes one project so a new snapshot is
really written. Reports medians and MB/s.

With --lab-inventory (a lab built by lab_hosts, docs/howto-lab-hosts.md), the same data is also
built on the first gateway host and, in the same rounds, moved as the life cycle moves it between
hosts: snapshot = gateway_snapshot on the gateway host (data to bundle, fetched to the controller)
then on the storage host (bundle put there, checked, stored); restore = gateway_restore on the
storage host (snapshot to bundle) then on the second gateway host (bundle to data). Their time is
the two tasks' time, from ansible's events; the ratio compares the throughput with the local one.
"""

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import ansible_runner

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / ".build" / "collections"))
from ansible_collections.demiurge.gateway.plugins.module_utils._snapshot import restore_snapshot, take_snapshot  # noqa: E402

# The same data as build(), made on a lab host by its own Python.
REMOTE_BUILD = """
import os, sys
root, projects, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
per = total // projects
for index in range(projects):
    folder = os.path.join(root, "projects", "project-%03d" % index)
    os.makedirs(folder, exist_ok=True)
    open(os.path.join(folder, "doc.yjs"), "wb").write(os.urandom(per * 3 // 4))
    for update in range(4):
        open(os.path.join(folder, "update-%04d.bin" % update), "wb").write(os.urandom(per // 16))
open(os.path.join(root, "state.json"), "w").write("{}")
"""
HOSTS_PLAYBOOK = """\
- name: Move a snapshot between hosts
  hosts: localhost
  gather_facts: false
  vars:
    data: /var/lib/demiurge/bench/data
    target: /var/lib/demiurge/bench/target
    storage: /var/lib/demiurge/bench/org-data
    common: {organization: "%(organization)s", verify_allocation: false}
  tasks:
    - name: Change one project on the gateway host
      ansible.builtin.shell: head -c %(round)d /dev/urandom > {{ data }}/projects/project-000/update-0000.bin
      delegate_to: "{{ groups['gateway_hosts'][0] }}"
      changed_when: true
    - name: snapshot 1 bundle on the gateway host
      demiurge.gateway.gateway_snapshot:
        data_dir: "{{ data }}"
        bundle: push.tar
        organization: "%(organization)s"
        allocation_id: bench
        verify_allocation: false
      delegate_to: "{{ groups['gateway_hosts'][0] }}"
      register: pushed
    - name: snapshot 2 store on the storage host
      demiurge.gateway.gateway_snapshot:
        bundle: "{{ pushed.bundle }}"
        storage_dir: "{{ storage }}"
        organization: "%(organization)s"
        allocation_id: bench
        keep: 2
        verify_allocation: false
      delegate_to: "{{ groups['storage'][0] }}"
    - name: restore 1 bundle on the storage host
      demiurge.gateway.gateway_restore:
        storage_dir: "{{ storage }}"
        bundle: pull.tar
        organization: "%(organization)s"
      delegate_to: "{{ groups['storage'][0] }}"
      register: pulled
    - name: restore 2 into the other gateway host
      demiurge.gateway.gateway_restore:
        bundle: "{{ pulled.bundle }}"
        data_dir: "{{ target }}"
        organization: "%(organization)s"
      delegate_to: "{{ groups['gateway_hosts'][-1] }}"
    - name: End
      ansible.builtin.meta: noop
"""


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


def on_hosts(inventory, pattern, command):
    """Run a shell command on lab hosts over their connection (raises when it fails)."""
    subprocess.run([str(Path(sys.executable).with_name("ansible")), "-i", inventory, pattern, "-m", "ansible.builtin.shell",
                    "-a", command], check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg")))


def hosts_round(inventory, organization, round_no):
    """(snapshot seconds, restore seconds) of one round between the lab's hosts."""
    starts = []

    def on_event(event):
        if event["event"] == "playbook_on_task_start":
            starts.append((event["event_data"]["task"], datetime.fromisoformat(event["created"])))
        return True

    with tempfile.TemporaryDirectory() as tmp:
        playbook = Path(tmp) / "move.yml"
        playbook.write_text(HOSTS_PLAYBOOK % {"organization": organization, "round": 4096 + round_no})
        result = ansible_runner.run(private_data_dir=tmp, playbook=str(playbook), inventory=inventory, quiet=True,
                                    event_handler=on_event, envvars={"ANSIBLE_CONFIG": str(REPO / "ansible.cfg")})
        if result.rc != 0:
            raise SystemExit("moving the snapshot between hosts failed: %s" % result.stdout.read()[-2000:])
    at = dict(starts)
    return ((at["restore 1 bundle on the storage host"] - at["snapshot 1 bundle on the gateway host"]).total_seconds(),
            (at["End"] - at["restore 1 bundle on the storage host"]).total_seconds())


def report(label, samples, megabytes):
    median = statistics.median(samples)
    print("%-26s median %7.0f ms  %6.0f MB/s  (min %.0f, max %.0f ms)" % (
        label, median * 1000, megabytes / median, min(samples) * 1000, max(samples) * 1000))
    return megabytes / median


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--megabytes", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lab-inventory", help="the inventory directory of a lab (lab_hosts)")
    args = parser.parse_args()
    os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".build" / "collections"))
    # ansible-runner starts ansible-playbook from PATH: use the one beside this interpreter.
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]
    work = Path(tempfile.mkdtemp(prefix="snapshot-bench-"))
    organization = str(uuid.uuid4())
    lab = args.lab_inventory
    try:
        data = work / "gateway-a"
        size = build(data, args.projects, args.megabytes << 20)
        if lab:
            on_hosts(lab, "gateway_hosts:storage", "rm -rf /var/lib/demiurge/bench")
            on_hosts(lab, "gateway_hosts[0]", "python3 -c %s /var/lib/demiurge/bench/data %d %d" % (
                shlex.quote(REMOTE_BUILD), args.projects, args.megabytes << 20))
        storage = str(work / "org-data")
        timings = {"snapshot": [], "restore": [], "snapshot between hosts": [], "restore between hosts": []}
        for round_no in range(args.rounds):
            (data / "projects" / "project-000" / "update-0000.bin").write_bytes(os.urandom(4096 + round_no))
            started = time.perf_counter()
            take_snapshot(str(data), storage, organization, "bench", 2, False, False)
            timings["snapshot"].append(time.perf_counter() - started)
            target = work / "gateway-b"
            started = time.perf_counter()
            restore_snapshot(str(target), storage, organization, None, False)
            timings["restore"].append(time.perf_counter() - started)
            if lab:
                pushed, pulled = hosts_round(lab, organization, round_no)
                timings["snapshot between hosts"].append(pushed)
                timings["restore between hosts"].append(pulled)
        megabytes = size / (1 << 20)
        print("%d projects, %.1f MB, %d files per snapshot" % (args.projects, megabytes, args.projects * 5 + 1))
        rates = {label: report(label, samples, megabytes) for label, samples in timings.items() if samples}
        if lab:
            for kind in ("snapshot", "restore"):
                print("%s between hosts: %.2f of the local throughput" % (kind, rates[kind + " between hosts"] / rates[kind]))
    finally:
        shutil.rmtree(work)
        if lab:
            on_hosts(lab, "gateway_hosts:storage", "rm -rf /var/lib/demiurge/bench")


if __name__ == "__main__":
    main()
