"""Register and deregister N organization records through the modules and through the raw API.

Usage (from the repository root, with the local stack up):
    .venv/bin/python benchmarks/pdns_records.py [--env dev-001] [--port-base 15000] [--count 200]

Module path: a playbook loops demiurge.gateway.pdns_rrset over the organizations (present, then
absent) under ansible-runner; per-operation time is the gap between consecutive item events.
Raw path: the same logical operation (org-<uuid> and *.org-<uuid>, one PATCH) straight over HTTP.
Reports the median per operation of each and their ratio.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path

import ansible_runner

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / ".build" / "collections"))
from ansible_collections.demiurge.gateway.plugins.module_utils._paths import state_path  # noqa: E402


def api(method, url, key, body=None):
    request = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"X-API-Key": key, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def raw_round(base, key, zone, orgs):
    """Median seconds of one register and one deregister over the raw API."""
    timings = {"present": [], "absent": []}
    for state in ("present", "absent"):
        for org in orgs:
            names = ["org-%s.%s." % (org, zone), "*.org-%s.%s." % (org, zone)]
            if state == "present":
                changes = [{"name": n, "type": "A", "ttl": 60, "changetype": "REPLACE",
                            "records": [{"content": "127.0.0.1", "disabled": False}]} for n in names]
            else:
                changes = [{"name": n, "type": "A", "changetype": "DELETE"} for n in names]
            started = time.perf_counter()
            api("PATCH", "%s/zones/%s." % (base, zone), key, {"rrsets": changes})
            timings[state].append(time.perf_counter() - started)
    return {state: statistics.median(values) for state, values in timings.items()}


PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/demiurge.gateway.pdns:
      api_url: "{{ api_url }}"
      api_key: "{{ api_key }}"
  tasks:
    - name: register
      demiurge.gateway.pdns_rrset: {zone: "{{ zone }}", organization: "{{ item }}", records: [127.0.0.1], owner: bench}
      loop: "{{ orgs }}"
    - name: deregister
      demiurge.gateway.pdns_rrset: {zone: "{{ zone }}", organization: "{{ item }}", owner: bench, state: absent}
      loop: "{{ orgs }}"
"""


def module_round(api_url, key, zone, orgs):
    """Median seconds per loop item of each task, from ansible-runner's event timestamps."""
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        project.mkdir()
        (project / "bench.yml").write_text(PLAYBOOK)
        stamps = {"register": [], "deregister": []}

        def on_event(event):
            data = event.get("event_data", {})
            task = data.get("task")
            if task in stamps and event["event"] in ("playbook_on_task_start", "runner_item_on_ok"):
                stamps[task].append(datetime.fromisoformat(event["created"]))
            return True

        result = ansible_runner.run(
            private_data_dir=tmp, playbook="bench.yml", quiet=True, event_handler=on_event,
            inventory="localhost ansible_connection=local ansible_python_interpreter=%s" % sys.executable,
            extravars={"api_url": api_url, "api_key": key, "zone": zone, "orgs": orgs},
            envvars={"ANSIBLE_COLLECTIONS_PATH": os.environ["ANSIBLE_COLLECTIONS_PATH"]},
        )
        if result.rc != 0:
            raise SystemExit("benchmark playbook failed (rc %s): %s" % (result.rc, result.stdout.read()[-2000:]))
    medians = {}
    for task, times in stamps.items():
        gaps = [(later - earlier).total_seconds() for earlier, later in zip(times, times[1:])]
        medians["present" if task == "register" else "absent"] = statistics.median(gaps)
    return medians


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=os.environ.get("DEMIURGE_ENV", "dev-001"))
    parser.add_argument("--port-base", type=int, default=int(os.environ.get("DEMIURGE_PORT_BASE", "15000")))
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args()
    os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", str(REPO / ".build" / "collections"))
    # ansible-runner starts ansible-playbook from PATH: use the one beside this interpreter.
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]

    key = Path(state_path(args.env, "secrets", "pdns_api_key")).read_text().strip()
    api_url = "http://127.0.0.1:%d" % (args.port_base + 81)
    base = api_url + "/api/v1/servers/localhost"
    zone = "bench-%s.test" % uuid.uuid4().hex[:8]
    api("POST", base + "/zones", key, {"name": zone + ".", "kind": "Native", "nameservers": ["ns1.%s." % zone]})
    try:
        orgs = [str(uuid.uuid4()) for dummy in range(args.count)]
        raw = raw_round(base, key, zone, orgs)
        modules = module_round(api_url, key, zone, orgs)
    finally:
        api("DELETE", "%s/zones/%s." % (base, zone), key)

    print("%d organizations, PowerDNS at %s" % (args.count, api_url))
    print("%-12s %14s %14s %8s" % ("operation", "module (ms)", "raw API (ms)", "ratio"))
    for state, label in (("present", "register"), ("absent", "deregister")):
        print("%-12s %14.1f %14.2f %7.0fx" % (label, modules[state] * 1000, raw[state] * 1000, modules[state] / raw[state]))


if __name__ == "__main__":
    main()
