"""data_sync.yml at 1,000 and 10,000 organizations: its cost follows what changed, not how many there are.

Usage (from the repository root, with the local stack up; DEMIURGE_ENV / DEMIURGE_PORT_BASE pick it):
    .venv/bin/python benchmarks/data_sync.py [--sizes 1000 10000] [--changed 100] [--rounds 3]
    .venv/bin/python benchmarks/data_sync.py --remove      # only remove a population left behind

A synthetic population (tests/system/population.py) gets a data directory per gateway (a project
with a 4 KiB Yjs file and a state file) under a private directory in /dev/shm, with central storage
beside it (-e allocation_storage_dir): a first sync writes 10,000 snapshots, and on a disk that is
fsync after fsync. What is measured afterwards reads and writes the same way on either.

Reported per size, each the median of --rounds runs, with the baseline measured in the same run:
    one_task     a playbook of one debug task (the floor of any playbook here)
    first        the first data_sync.yml: a snapshot for every organization (one run)
    nothing      data_sync.yml when no organization's data changed
    changed      data_sync.yml after --changed organizations' state files were rewritten
    loop         (with --loop) the same pushes as one loop item per organization, how data_sync.yml
                 ran before (one run, nothing changed)
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reconcile import POPULATION, REPO, BASE, ENV, db, median_of, playbook, run_sizes, secret  # noqa: E402

ROOT = Path("/dev/shm/demiurge-bench-data-sync-%s" % ENV)
STORAGE = ROOT / "storage"
INVENTORY = str(REPO / "inventories" / "local")
LOOP = """\
- name: One push per organization
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Push each organization's data
      demiurge.gateway.gateway_snapshot:
        data_dir: "{{ item.data_dir }}"
        storage_dir: "%s"
        organization: "{{ item.organization }}"
        allocation_id: "{{ item.allocation_id }}"
        login_host: 127.0.0.1
        login_port: %d
        login_user: demiurge
        login_password: "%s"
        login_db: demiurge
      loop: "{{ lookup('ansible.builtin.file', '%s') | from_json }}"
"""


def give_data(members):
    """A data directory for each member's gateway, named in its pool metadata; returns the allocations."""
    allocations = []
    with db() as conn:
        names = dict((str(a), n) for a, n in conn.execute(
            "SELECT og.id, g.name FROM organizations_gateways og JOIN gateways g ON g.id = og.gateway_id WHERE g.name LIKE %s",
            (POPULATION.prefix + "%",)).fetchall())
        for organization, allocation in members:
            data = ROOT / "gateways" / names[allocation] / "data"
            (data / "projects" / "p-1").mkdir(parents=True)
            (data / "projects" / "p-1" / "doc.yjs").write_bytes(os.urandom(4096))
            (data / "state.json").write_text(json.dumps({"organization": organization, "tokens": ["t-" + allocation]}))
            allocations.append({"organization": organization, "allocation_id": allocation, "data_dir": str(data)})
        conn.execute("UPDATE gateways SET metadata = metadata || jsonb_build_object('data_dir', %s || '/gateways/' || name || '/data') "
                     "WHERE name LIKE %s", (str(ROOT), POPULATION.prefix + "%"))
    return allocations


def data_sync():
    return playbook("demiurge.gateway.data_sync", "-i", INVENTORY, "-e", "allocation_storage_dir=%s" % STORAGE)[0]


def settle():
    """Past the window in which a note is not trusted (changes within 2 s of it are always read)."""
    time.sleep(2.5)


def size_round(count, args, one_task):
    allocations = give_data(POPULATION.create(count))
    settle()
    result = {"organizations": count, "one_task_s": median_of(args.rounds, lambda: playbook(one_task)[0])}
    result["first_s"] = round(data_sync(), 2)
    settle()
    result["nothing_s"] = median_of(args.rounds, data_sync)
    times = []
    for number in range(args.rounds):
        for item in allocations[number * args.changed:(number + 1) * args.changed]:
            Path(item["data_dir"], "state.json").write_text(json.dumps({"tokens": ["rotated-%d" % number]}))
        times.append(data_sync())
    result["changed_s"], result["changed"] = round(statistics.median(times), 2), args.changed
    if args.loop:
        settle()
        data_sync()  # the notes of the organizations changed above, now past their window
        with tempfile.NamedTemporaryFile("w", suffix=".json") as items, tempfile.NamedTemporaryFile("w", suffix=".yml") as loop:
            json.dump(allocations, items)
            items.flush()
            loop.write(LOOP % (STORAGE, BASE + 432, secret("pool_db_password"), items.name))
            loop.flush()
            result["loop_s"] = round(playbook(loop.name)[0], 2)
    result["nothing_ratio_to_one_task"] = round(result["nothing_s"] / result["one_task_s"], 2)
    return result


def remove():
    left = POPULATION.remove()
    shutil.rmtree(ROOT, ignore_errors=True)
    return left


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--changed", type=int, default=100, help="organizations whose data changes between runs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loop", action="store_true", help="also time one loop item per organization (slow at 10,000)")
    parser.add_argument("--remove", action="store_true", help="only remove a population left behind, then exit")
    args = parser.parse_args()
    run_sizes(args, size_round, remove)


if __name__ == "__main__":
    main()
