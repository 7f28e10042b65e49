"""reconcile.yml at 1,000 and 10,000 organizations: nothing to repair, and DNS and routes to restore.

Usage (from the repository root, with the local stack up; DEMIURGE_ENV / DEMIURGE_PORT_BASE pick it):
    .venv/bin/python benchmarks/reconcile.py [--sizes 1000 10000] [--repair 200] [--rounds 3]
    .venv/bin/python benchmarks/reconcile.py --remove      # only remove a population left behind

A synthetic population is created in bulk as allocate.yml would have left it (tests/system/population.py:
gateway rows named syn-NNNNN, never started, active allocations, their names and routes). It is
removed afterwards, and on start when an interrupted run left one (the events reconcile recorded
for it stay: they are history).

Reported per size, each the median of --rounds runs, with the baseline measured in the same run:
    one_task     a playbook of one debug task (the floor of any playbook here)
    nothing      reconcile.yml when nothing differs
    repair       reconcile.yml after deleting the names and routes of --repair organizations
    rebuild      reconcile.yml after deleting every route of the population from the edge (a blank
                 edge host rebuilt: one validation and one reload)
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / ".build" / "collections"))
sys.path.insert(0, str(REPO / "tests" / "system"))
from ansible_collections.demiurge.gateway.plugins.module_utils._paths import state_path  # noqa: E402
from ansible_collections.demiurge.gateway.plugins.module_utils._pdns_client import PdnsClient  # noqa: E402
from population import Population  # noqa: E402

ENV = os.environ.get("DEMIURGE_ENV", "dev-001")
BASE = int(os.environ.get("DEMIURGE_PORT_BASE", "15000"))
ZONE = ENV + ".demiurge.test."
UPSTREAM = "127.0.0.1:%d" % (BASE + 501)  # any address will do: nothing is proxied
ONE_TASK = """\
- name: One task
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Say hello
      ansible.builtin.debug:
        msg: hello
"""


def secret(name):
    return Path(state_path(ENV, "secrets", name)).read_text().strip()


def db():
    return psycopg.connect(host="127.0.0.1", port=BASE + 432, user="demiurge", password=secret("pool_db_password"),
                           dbname="demiurge", autocommit=True)


POPULATION = Population(db, None, state_path(ENV, "nginx"), ZONE, UPSTREAM)


def damage(members):
    """Names and routes of members deleted, as a blank edge and a lost zone would leave them."""
    POPULATION.publish(members, present=False)
    POPULATION.route(members, present=False)


def playbook(*argv):
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), DEMIURGE_ENV=ENV, DEMIURGE_PORT_BASE=str(BASE),
               ANSIBLE_COLLECTIONS_PATH=str(REPO / ".build" / "collections"))
    started = time.monotonic()
    done = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), *argv], env=env,
                          capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit("%s failed (rc %s):\n%s" % (" ".join(argv), done.returncode, done.stdout[-3000:]))
    return elapsed, done.stdout


def reconcile():
    return playbook("demiurge.gateway.reconcile", "-i", str(REPO / "inventories" / "local"))


def median_of(rounds, measure):
    return round(statistics.median(measure() for dummy in range(rounds)), 2)


def size_round(count, args, one_task):
    population = POPULATION.create(count)
    result = {"organizations": count, "one_task_s": median_of(args.rounds, lambda: playbook(one_task)[0])}
    result["nothing_s"] = median_of(args.rounds, lambda: reconcile()[0])
    damaged = population[:args.repair]
    times = []
    for dummy in range(args.rounds):
        damage(damaged)
        elapsed, out = reconcile()
        times.append(elapsed)
    result["repair_s"] = round(statistics.median(times), 2)
    result["repaired"] = len(damaged)
    times = []
    for dummy in range(args.rounds):
        POPULATION.route(population, present=False)
        times.append(reconcile()[0])
    result["rebuild_s"] = round(statistics.median(times), 2)
    result["nothing_ratio_to_one_task"] = round(result["nothing_s"] / result["one_task_s"], 2)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repair", type=int, default=200, help="organizations whose names and routes are deleted")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--remove", action="store_true", help="only remove a population left behind, then exit")
    args = parser.parse_args()
    run_sizes(args, size_round, POPULATION.remove)


def run_sizes(args, one_size, remove):
    """Remove what an interrupted run left (only that, with --remove); then one_size(count, args,
    one-task playbook) for each of --sizes, removing its population after it; print each result
    and how "nothing to do" grew from the smallest size to the largest."""
    POPULATION.pdns = PdnsClient("http://127.0.0.1:%d" % (BASE + 81), secret("pdns_api_key"), timeout=120)
    left = remove()
    if args.remove:
        print("removed %d synthetic organizations" % left)
        return
    results = []
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as one_task:
        one_task.write(ONE_TASK)
        one_task.flush()
        for count in args.sizes:
            try:
                results.append(one_size(count, args, one_task.name))
            finally:
                remove()
            print(json.dumps(results[-1]), flush=True)
    if len(results) > 1:
        print(json.dumps({"nothing_ratio_%d_to_%d" % (results[-1]["organizations"], results[0]["organizations"]):
                          round(results[-1]["nothing_s"] / results[0]["nothing_s"], 2)}))


if __name__ == "__main__":
    main()
