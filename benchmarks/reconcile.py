"""reconcile.yml at 1,000 and 10,000 organizations: nothing to repair, and DNS and routes to restore.

Usage (from the repository root, with the local stack up; DEMIURGE_ENV / DEMIURGE_PORT_BASE pick it):
    .venv/bin/python benchmarks/reconcile.py [--sizes 1000 10000] [--repair 200] [--rounds 3]
    .venv/bin/python benchmarks/reconcile.py --remove      # only remove a population left behind

A synthetic population is created directly, in bulk, as allocate.yml would have left it: for each
organization a gateway row (status allocated, named syn-NNNNN, never started: reconcile does not
talk to the gateways of healthy allocations), an active allocation, its two DNS record sets (one
PATCH per 2,000) and its route on the stack's edge (written into the route shards, one reload).
It is removed the same way afterwards, and on start when an interrupted run left one (the events
reconcile recorded for it stay: they are history).

Reported per size, each the median of --rounds runs, with the baseline measured in the same run:
    one_task     a playbook of one debug task (the floor of any playbook here)
    nothing      reconcile.yml when nothing differs
    repair       reconcile.yml after deleting the names and routes of --repair organizations
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / ".build" / "collections"))
from ansible_collections.demiurge.gateway.plugins.module_utils import _edge_route  # noqa: E402
from ansible_collections.demiurge.gateway.plugins.module_utils._paths import state_path  # noqa: E402

ENV = os.environ.get("DEMIURGE_ENV", "dev-001")
BASE = int(os.environ.get("DEMIURGE_PORT_BASE", "15000"))
ZONE = ENV + ".demiurge.test."
PREFIX = "syn-"
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


def pdns(method, body=None):
    request = urllib.request.Request("http://127.0.0.1:%d/api/v1/servers/localhost/zones/%s" % (BASE + 81, ZONE),
                                     method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"X-API-Key": secret("pdns_api_key"), "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.read()


def names(organization):
    return ["org-%s.%s" % (organization, ZONE), "*.org-%s.%s" % (organization, ZONE)]


def publish(population, present=True):
    """Both names of each organization, 1,000 organizations per PATCH."""
    for start in range(0, len(population), 1000):
        changes = []
        for organization, owner in population[start:start + 1000]:
            for name in names(organization):
                if present:
                    changes.append({"name": name, "type": "A", "ttl": 60, "changetype": "REPLACE",
                                    "records": [{"content": "127.0.0.1", "disabled": False}],
                                    "comments": [{"content": "owner=" + owner, "account": "demiurge"}]})
                else:
                    changes.append({"name": name, "type": "A", "changetype": "DELETE"})
        pdns("PATCH", {"rrsets": changes})


def route(population, present=True):
    """Every organization's route with edge_route's own batch: one nginx -t, one reload."""
    params = {"config_root": state_path(ENV, "nginx"), "config_file": None, "domain": ZONE, "force": False,
              "listen_url": None, "nginx_binary": "/usr/sbin/nginx", "reload_timeout": 10, "lock_timeout": 60}
    items = [{"organization": organization, "owner": owner, "upstream": UPSTREAM, "state": "present" if present else "absent"}
             for organization, owner in population]
    done, refused = _edge_route.change_routes(params, items, False, run_command, print)
    if refused:
        raise SystemExit("routes refused: %s" % refused)
    time.sleep(1)  # the reload settles


def run_command(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def create(count):
    """count organizations as allocate.yml leaves them; returns [(organization, allocation id)]."""
    with db() as conn:
        rows = conn.execute(
            "WITH g AS (INSERT INTO gateways (name, api_url, nginx_upstream, status, metadata) "
            "  SELECT %s || lpad(n::text, 5, '0'), 'http://' || %s, %s, 'allocated', '{\"kind\": \"synthetic\"}' "
            "  FROM generate_series(1, %s) n RETURNING id) "
            "INSERT INTO organizations_gateways (organization_id, gateway_id, status, activated_at) "
            "SELECT gen_random_uuid(), id, 'active', now() FROM g RETURNING organization_id, id",
            (PREFIX, UPSTREAM, UPSTREAM, count)).fetchall()
    population = [(str(organization), str(allocation)) for organization, allocation in rows]
    publish(population)
    route(population)
    return population


def synthetic():
    with db() as conn:
        return [(str(o), str(a)) for o, a in conn.execute(
            "SELECT og.organization_id, og.id FROM organizations_gateways og JOIN gateways g ON g.id = og.gateway_id "
            "WHERE g.name LIKE %s", (PREFIX + "%",)).fetchall()]


def remove():
    population = synthetic()
    if population:
        publish(population, present=False)
        route(population, present=False)
    with db() as conn:
        conn.execute("DELETE FROM allocation_steps WHERE allocation_id IN (SELECT og.id FROM organizations_gateways og "
                     "JOIN gateways g ON g.id = og.gateway_id WHERE g.name LIKE %s)", (PREFIX + "%",))
        conn.execute("DELETE FROM organizations_gateways WHERE gateway_id IN (SELECT id FROM gateways WHERE name LIKE %s)",
                     (PREFIX + "%",))
        conn.execute("DELETE FROM gateways WHERE name LIKE %s", (PREFIX + "%",))
    return len(population)


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
    population = create(count)
    result = {"organizations": count, "one_task_s": median_of(args.rounds, lambda: playbook(one_task)[0])}
    result["nothing_s"] = median_of(args.rounds, lambda: reconcile()[0])
    damaged = population[:args.repair]
    times = []
    for dummy in range(args.rounds):
        publish(damaged, present=False)
        route(damaged, present=False)
        elapsed, out = reconcile()
        times.append(elapsed)
    result["repair_s"] = round(statistics.median(times), 2)
    result["repaired"] = len(damaged)
    result["nothing_ratio_to_one_task"] = round(result["nothing_s"] / result["one_task_s"], 2)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repair", type=int, default=200, help="organizations whose names and routes are deleted")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--remove", action="store_true", help="only remove a population left behind, then exit")
    args = parser.parse_args()
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
                results.append(size_round(count, args, one_task.name))
            finally:
                remove()
            print(json.dumps(results[-1]), flush=True)
    if len(results) > 1:
        print(json.dumps({"nothing_ratio_%d_to_%d" % (results[-1]["organizations"], results[0]["organizations"]):
                          round(results[-1]["nothing_s"] / results[0]["nothing_s"], 2)}))


if __name__ == "__main__":
    main()
