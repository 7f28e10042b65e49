"""allocate.yml and release.yml for 100 organizations in one run, against the same 100 as separate runs.

Usage (from the repository root, with the local stack up; DEMIURGE_ENV / DEMIURGE_PORT_BASE pick it):
    .venv/bin/python benchmarks/batch_allocation.py [--organizations 100] [--forks 10 25]

It starts that many extra gateway stand-ins (bench-batch-NNN, on the port base + 1201 up: for
dev-001, 16201 up, clear of the test stack's ports, 16000 + 80 to 943) and registers them, so the
pool has enough ready gateways; they are stopped and retired afterwards, and on start when an
interrupted run left some. Reported, in seconds:

    separate_allocate / separate_release   the organizations one ansible-playbook run each, in turn
                                           (the baseline: how a list was allocated before)
    batch_allocate                         one run with organization_ids, once per round (a list's
                                           steps run on the controller: -f does not matter)
    batch_release_fN                       one run with organization_ids and -f N (a host each)
    ratio_allocate                         separate over batch, per round
"""

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reconcile import BASE, ENV, db, playbook, state_path  # noqa: E402

PREFIX = "bench-batch-"
STANDINS = """\
- name: Gateways for the batch benchmark
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Run the stand-ins
      ansible.builtin.include_role:
        name: demiurge.gateway.gateway_standin
      vars:
        gateway_standin_env_name: %(env)s
        gateway_standin_name_prefix: %(prefix)s
        gateway_standin_port_base: %(port_base)d
        gateway_standin_config_url: https://127.0.0.1:%(api_port)d
        gateway_standin_pool_db: "{{ demiurge_pool_db }}"
        gateway_standin_count: %(count)d
        gateway_standin_names: %(names)s
        gateway_standin_state: %(state)s
"""


def standins(count, state, names=()):
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as book:
        book.write(STANDINS % {"env": ENV, "prefix": PREFIX, "port_base": BASE + 1200, "api_port": BASE + 500, "count": count,
                               "names": json.dumps(list(names)), "state": state})
        book.flush()
        playbook(book.name)


def recover():
    """Organizations an interrupted run left allocated are released; its gateways stopped and retired."""
    with db() as conn:
        held = [str(row[0]) for row in conn.execute(
            "SELECT og.organization_id FROM organizations_gateways og JOIN gateways g ON g.id = og.gateway_id "
            "WHERE og.stopped_at IS NULL AND g.name LIKE %s", (PREFIX + "%",)).fetchall()]
    # Every stand-in with a directory here, registered or not: a run stopped before a stand-in was
    # registered still left it running.
    names = sorted(path.name for path in Path(state_path(ENV, "gateways")).glob(PREFIX + "*") if path.is_dir())
    if held:
        playbook("demiurge.gateway.release", "-e", json.dumps({"organization_ids": held}), "-f", "10")
    if names:
        standins(0, "stopped", names)
        with db() as conn:
            conn.execute("UPDATE gateways SET status = 'retired', status_reason = 'batch benchmark' "
                         "WHERE name LIKE %s AND status <> 'retired'", (PREFIX + "%",))


def one_by_one(name, organizations):
    started = time.monotonic()
    for organization in organizations:
        playbook("demiurge.gateway." + name, "-e", "organization_id=%s" % organization)
    return round(time.monotonic() - started, 2)


def batch(name, organizations, forks):
    return round(playbook("demiurge.gateway." + name, "-e", json.dumps({"organization_ids": organizations}),
                          "-f", str(forks))[0], 2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--organizations", type=int, default=100)
    parser.add_argument("--forks", type=int, nargs="+", default=[10, 25])
    args = parser.parse_args()
    recover()
    standins(args.organizations, "started")
    try:
        organizations = [str(uuid.uuid4()) for dummy in range(args.organizations)]
        result = {"organizations": args.organizations,
                  "separate_allocate": one_by_one("allocate", organizations),
                  "separate_release": one_by_one("release", organizations)}
        # A list's allocation is one host whatever -f says; its release runs a host per organization.
        for forks in args.forks:
            organizations = [str(uuid.uuid4()) for dummy in range(args.organizations)]
            result.setdefault("batch_allocate", []).append(batch("allocate", organizations, forks))
            result["batch_release_f%d" % forks] = batch("release", organizations, forks)
        result["ratio_allocate"] = [round(result["separate_allocate"] / seconds, 2) for seconds in result["batch_allocate"]]
        print(json.dumps(result))
    finally:
        try:
            recover()
        except SystemExit as exc:  # do not hide why the run itself stopped
            print("cleaning up failed: %s" % exc, file=sys.stderr)


if __name__ == "__main__":
    main()
