"""The life cycle under kills and hangs, on the test stack's real services.

Kill matrices: allocate.yml, release.yml and a rollback are killed, whole process tree, at the start
of every task and at offsets inside it; reconcile.yml then runs twice (the second changes nothing)
and every invariant holds (tests/system/invariants.py). Faults as hangs: a stopped (SIGSTOP)
PowerDNS, gateway, nginx or PostgreSQL, and central storage that is full or read-only.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

import invariants
from invariants import db
from lifecycle import DOMAIN, ENV, dead_run, eventually, gateway_data_dir, live, plain, run, run_and_kill, wait_leases_expired

from ansible_collections.demiurge.gateway.plugins.module_utils._edge_route import ensure_routes, list_routes
from ansible_collections.demiurge.gateway.plugins.module_utils._paths import state_path
from ansible_collections.demiurge.gateway.plugins.module_utils._pdns_client import PdnsClient
from ansible_collections.demiurge.gateway.plugins.module_utils._pdns_rrset import ensure_rrsets
from ansible_collections.demiurge.gateway.plugins.module_utils._snapshot import list_snapshots

pytestmark = pytest.mark.usefixtures("invariants_hold")
kill_matrix = pytest.mark.kill_matrix

ALLOCATE_TASKS = ["Claim a ready gateway", "Publish the organization's names", "Route the organization on every edge",
                  "Restore the organization's data", "Hand the gateway to the organization", "Mark the allocation active",
                  "Publish the result for AWX"]
RELEASE_TASKS = ["Mark the release in progress", "Push the organization's data", "Withdraw the organization's names",
                 "Remove the routes from every edge", "Recycle the gateway", "End the allocation"]
ROLLBACK_TASKS = ["Read this run's journal", "Withdraw the organization's names", "Remove the routes from every edge",
                  "Recycle the gateway", "End the allocation"]
# At the task's start (the boundary with the task before) and inside it.
OFFSETS = [0, 0.1]
PROJECTS = ["p-1", "p-2"]


def reconcile_twice():
    """Reconcile once the killed run's lease has expired; a second reconcile finds nothing to do."""
    wait_leases_expired()
    rc, dummy, out = run("reconcile")
    assert rc == 0, out[-3000:]
    rc, dummy, out = run("reconcile")
    assert rc == 0 and "changed=0" in out, out[-3000:]


def write_projects(data_dir):
    for project in PROJECTS:
        folder = Path(data_dir) / "projects" / project
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "doc.yjs").write_bytes(os.urandom(4096))
    (Path(data_dir) / "state.json").write_text('{"oauth": {"tokens": ["secret-of-%s"]}}' % Path(data_dir).parent.name)


def newest_projects(organization):
    snapshots = [m for m in list_snapshots(state_path(ENV, "org-data"), str(organization)) if m["intact"]]
    return set(snapshots[0]["projects"]) if snapshots else set()


@pytest.fixture(scope="module")
def data_org():
    """An organization with data in central storage, released between the tests that use it."""
    organization = uuid.uuid4()
    assert run("allocate", organization)[0] == 0
    write_projects(gateway_data_dir(organization))
    assert run("release", organization)[0] == 0
    assert newest_projects(organization) == set(PROJECTS)
    return organization


def settle(organization):
    """After reconcile: the organization is either fully served or fully gone; release it."""
    row = live(organization)
    if row is not None:
        assert row[2] == "active"
        rc, dummy, out = run("release", organization)
        assert rc == 0, out[-3000:]
    assert live(organization) is None
    assert newest_projects(organization) == set(PROJECTS), "no project lost"


@kill_matrix
@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("task", ALLOCATE_TASKS)
def test_allocate_killed_anywhere_is_repaired(data_org, task, offset):
    rc, out = run_and_kill("allocate", task, offset, data_org, allocation_lease_seconds=1)
    assert rc in (0, -signal.SIGKILL), out[-3000:]
    reconcile_twice()
    assert not invariants.check(settled=True)
    settle(data_org)


@kill_matrix
@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("task", RELEASE_TASKS)
def test_release_killed_anywhere_is_repaired(data_org, task, offset):
    assert run("allocate", data_org)[0] == 0
    rc, out = run_and_kill("release", task, offset, data_org, allocation_lease_seconds=1)
    assert rc in (0, -signal.SIGKILL), out[-3000:]
    reconcile_twice()
    row = live(data_org)
    if row is not None:
        assert row[2] == "active", "killed before it took the lease: the release never began"
        assert run("release", data_org)[0] == 0
    assert live(data_org) is None
    assert newest_projects(data_org) == set(PROJECTS), "the release's snapshot holds every project"


# A list goes step by step, each step one task for all its organizations (tasks/allocate_batch.yml).
BATCH_TASKS = ["Claim a ready gateway for each organization", "Publish the organizations' names",
               "Route the organizations on every edge", "Restore each organization's data", "Hand each gateway to its organization",
               "Mark the allocations active", "Publish the result for AWX"]


@kill_matrix
@pytest.mark.parametrize("task", BATCH_TASKS)
def test_a_batch_killed_anywhere_is_repaired(task):
    """Three organizations in one run, all of them at the same step when the run dies."""
    organizations = [str(uuid.uuid4()) for dummy in range(3)]
    rc, out = run_and_kill("allocate", task, 0.1, organization_ids=organizations, allocation_lease_seconds=1)
    assert rc in (0, -signal.SIGKILL), out[-3000:]
    reconcile_twice()
    assert not invariants.check(settled=True)
    for organization in organizations:
        row = live(organization)
        assert row is None or row[2] == "active", "each one fully served or fully gone"
        if row is not None:
            assert run("release", organization)[0] == 0


@contextmanager
def failing_handshakes():
    flags = [Path(state_path(ENV, "gateways", "gw-%03d" % n, "fail-handshake"))
             for n in range(1, int(os.environ["DEMIURGE_TEST_GATEWAYS"]) + 1)]
    for flag in flags:
        flag.write_text("injected\n")
    try:
        yield
    finally:
        for flag in flags:
            flag.unlink()


def test_a_batch_whose_gateways_refuse_the_handshake_rolls_each_organization_back():
    """Every gateway refuses: each organization fails at the handshake, after its names and routes
    went out, and each is rolled back alone and reported; nothing is left."""
    organizations = [str(uuid.uuid4()) for dummy in range(3)]
    with failing_handshakes():
        rc, data, out = run("allocate", organization_ids=organizations)
    assert rc != 0, out[-3000:]
    published = data["gateway_allocations"]
    for organization in organizations:
        assert published[organization]["failed"] and "step 'handshake'" in published[organization]["cause"], published
        assert "Allocation for organization %s was rolled back" % organization in plain(out)
        assert live(organization) is None
    assert not invariants.check(settled=True)


@kill_matrix
@pytest.mark.parametrize("offset", [0, 0.1])
@pytest.mark.parametrize("task", ROLLBACK_TASKS)
def test_rollback_killed_anywhere_is_repaired(data_org, task, offset):
    with failing_handshakes():
        rc, out = run_and_kill("allocate", task, offset, data_org, allocation_lease_seconds=1)
    assert rc in (2, -signal.SIGKILL), out[-3000:]
    reconcile_twice()
    assert live(data_org) is None


# --- faults as hangs -------------------------------------------------------------------------

def pid_of(name):
    return int(Path(state_path(ENV, "run", name)).read_text().split()[0])


@contextmanager
def stopped(*pids):
    """SIGSTOP: the process hangs, its sockets keep accepting (the kernel queues connections)."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def ready_gateway_pids():
    with db() as conn:
        names = [row[0] for row in conn.execute("SELECT name FROM gateways WHERE status = 'ready'").fetchall()]
    return [pid_of(name + ".pid") for name in names]


class HeldWrites:
    """A TCP hop in front of the PowerDNS API: reads pass through, a write (PATCH) gets no answer
    until its client has given up, and only then reaches PowerDNS, which applies it. This is what
    a PowerDNS that hung and resumed does to a request it had already received."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.held = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                client, dummy = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(client,), daemon=True).start()

    def _one(self, client):
        with client:
            request = self._read_request(client)
            if request.startswith(b"PATCH"):
                while client.recv(4096):  # until the client gives up and closes
                    pass
                self.held.append(request)
                self._forward(request)
                return
            client.sendall(self._forward(request))

    @staticmethod
    def _read_request(sock):
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, dummy, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1)) if b"ontent-" in head else 0
        while len(body) < length:
            body += sock.recv(65536)
        return head.replace(b"Connection: keep-alive", b"Connection: close") + b"\r\n\r\n" + body

    def _forward(self, request):
        with socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
            upstream.sendall(request)
            answer = b""
            while True:
                chunk = upstream.recv(65536)
                if not chunk:
                    return answer
                answer += chunk

    def close(self):
        self.server.close()


def test_a_dns_write_that_timed_out_and_was_applied_later_is_undone():
    """The PATCH times out, PowerDNS applies it afterwards: the step is journaled unknown (never
    "nothing was written"), and reconcile removes the records it left."""
    organization = uuid.uuid4()
    hop = HeldWrites(int(os.environ["DEMIURGE_TEST_PDNS_API_URL"].rsplit(":", 1)[1]))
    try:
        api = {"api_url": "http://127.0.0.1:%d" % hop.port, "api_key": os.environ["DEMIURGE_TEST_PDNS_API_KEY"],
               "timeout": 1, "retries": 0}
        rc, dummy, out = run("allocate", organization, demiurge_pdns_api=api)
    finally:
        hop.close()
    assert rc != 0 and "step 'dns'" in out and "may still be applied" in out, out[-3000:]
    assert "nothing was written" not in out and "nothing was sent" not in out
    assert hop.held, "the write reached PowerDNS after its client gave up"
    reconcile_twice()
    assert live(organization) is None


def test_powerdns_hanging_fails_the_allocation_and_reconcile_repairs_it():
    organization = uuid.uuid4()
    api = {"api_url": os.environ["DEMIURGE_TEST_PDNS_API_URL"], "api_key": os.environ["DEMIURGE_TEST_PDNS_API_KEY"],
           "timeout": 1, "retries": 0}
    with stopped(pid_of("pdns.pid")):
        rc, dummy, out = run("allocate", organization, demiurge_pdns_api=api)
    assert rc != 0 and "step 'dns'" in out and "did not answer" in out, out[-3000:]
    reconcile_twice()
    assert live(organization) is None


def test_a_hanging_gateway_is_recycled_and_the_allocation_rolled_back():
    organization = uuid.uuid4()
    with db() as conn:
        ready = conn.execute("SELECT count(*) FROM gateways WHERE status = 'ready'").fetchone()[0]
        # Earlier cases' faults on the same (oldest) gateway would set it aside here; that is test_allocation's case.
        conn.execute("UPDATE gateways SET faults_in_a_row = 0")
    with stopped(*ready_gateway_pids()):
        rc, dummy, out = run("allocate", organization, allocation_gateway_timeout=1)
    # A hang, not a refusal: no edge gets an answer from it, so it is never handed out.
    assert rc != 0 and "step 'route'" in out and "not answered by that gateway" in out and "timed out" in out, out[-3000:]
    assert "was rolled back" in out and live(organization) is None
    with db() as conn:
        assert conn.execute("SELECT count(*) FROM gateways WHERE status = 'ready'").fetchone()[0] == ready, \
            "the hung gateway was recycled and is back in the pool"


def test_nginx_hanging_during_the_route_step_leaves_the_previous_routes():
    organization = uuid.uuid4()
    with stopped(pid_of("edge-nginx.pid")):
        rc, dummy, out = run("allocate", organization, allocation_edge_reload_timeout=1)
    assert rc != 0 and "step 'route'" in out and "did not serve the new route" in out, out[-3000:]
    reconcile_twice()
    assert live(organization) is None


# A route job that dies between writing its shard and reloading nginx: run for real, with an
# `nginx -t` that hangs, and killed there with its whole group.
_DYING_ROUTE_JOB = """
import json, subprocess, sys
from ansible_collections.demiurge.gateway.plugins.module_utils._edge_route import ensure_routes
def run_command(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr
ensure_routes(json.loads(sys.argv[1]), False, run_command, print)
"""


def subprocess_run(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def test_a_route_written_by_a_job_killed_before_its_reload_is_made_live_by_reconcile(tmp_path):
    """The edge's listing then shows exactly the live set, so no drift is seen: only the edge's
    unfinished queue tells reconcile that nginx does not serve it."""
    organization = uuid.uuid4()
    assert run("allocate", organization)[0] == 0
    host = "org-%s.%s" % (organization, DOMAIN)
    with db() as conn:
        allocation_id, upstream = conn.execute(
            "SELECT og.id::text, g.nginx_upstream FROM organizations_gateways og JOIN gateways g ON g.id = og.gateway_id "
            "WHERE og.organization_id = %s AND og.stopped_at IS NULL", (str(organization),)).fetchone()
    route = {"organization": str(organization), "upstream": upstream, "owner": allocation_id}
    params = {"config_root": os.environ["DEMIURGE_TEST_EDGE_ROOT"], "config_file": None, "domain": DOMAIN, "force": False,
              "listen_url": "http://127.0.0.1:%s" % os.environ["DEMIURGE_TEST_HTTP_PORT"], "nginx_binary": "/usr/sbin/nginx",
              "reload_timeout": 10, "lock_timeout": 30, "organization": None, "reach_path": None, "reach_timeout": 5}
    # Out of the edge, for real (shard and live nginx), then written back by the job that dies.
    ensure_routes(dict(params, routes=[dict(route, state="absent")]), False, subprocess_run, print)
    assert invariants.served_upstream(host) == ""
    hang = tmp_path / "nginx"
    hang.write_text("#!/bin/sh\nexec sleep 600\n")
    hang.chmod(0o755)
    job = subprocess.Popen([sys.executable, "-c", _DYING_ROUTE_JOB,
                            json.dumps(dict(params, nginx_binary=str(hang), routes=[dict(route, state="present")]))],
                           start_new_session=True)
    try:
        eventually("the job writes the route", lambda: any(
            entry["organization"] == str(organization) for entry in list_routes(params["config_root"])), timeout=30)
        eventually("the job validates", lambda: "sleep" in subprocess_run(["pgrep", "-g", str(job.pid), "-a"])[1], timeout=30)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(10)
    assert invariants.served_upstream(host) == "", "written, never reloaded: not served"
    reconcile_twice()
    assert invariants.served_upstream(host) == upstream
    assert run("release", organization)[0] == 0


def test_postgresql_hanging_fails_the_claim_and_changes_nothing():
    organization = uuid.uuid4()
    pool_db = {"login_port": int(os.environ["DEMIURGE_TEST_PG_PORT"]), "login_password": os.environ["DEMIURGE_TEST_PG_PASSWORD"],
               "connect_timeout": 2}
    with stopped(pid_of("pool-db.pid")):
        rc, dummy, out = run("allocate", organization, demiurge_pool_db=pool_db)
    assert rc != 0 and "step 'claim'" in out and "Could not connect to PostgreSQL" in out, out[-3000:]
    assert "this run changed nothing" in out
    assert live(organization) is None


@contextmanager
def small_storage(size):
    """Central storage on a tmpfs of its own, so it can be filled and made read-only."""
    mount = Path(state_path(ENV, "fault-storage"))
    mount.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_storage_full_or_read_only_stops_the_release_and_loses_nothing(fault):
    organization = uuid.uuid4()
    with small_storage("256k") as storage:
        assert run("allocate", organization, allocation_storage_dir=str(storage))[0] == 0
        data_dir = gateway_data_dir(organization)
        write_projects(data_dir)
        if fault == "full":
            (Path(data_dir) / "projects" / "p-1" / "big.bin").write_bytes(os.urandom(512 * 1024))
        else:
            subprocess.run(["mount", "-o", "remount,ro", str(storage)], check=True)
        rc, dummy, out = run("release", organization, allocation_storage_dir=str(storage))
        expected = "The file system is full" if fault == "full" else "The file system is read-only"
        assert rc != 0 and "step 'snapshot'" in out and expected in out and "Nothing was withdrawn" in out, out[-3000:]
        assert live(organization)[2] == "releasing"
        assert invariants.check(settled=False) == []
        subprocess.run(["mount", "-o", "remount,rw,size=4m", str(storage)], check=True)
        rc, dummy, out = run("release", organization, allocation_storage_dir=str(storage))
        assert rc == 0, out[-3000:]
        snapshots = list_snapshots(str(storage), str(organization))
        assert snapshots and set(snapshots[0]["projects"]) == set(PROJECTS)
    assert live(organization) is None


def test_check_mode_predicts_and_changes_nothing():
    organization = uuid.uuid4()
    rc, dummy, out = run("allocate", organization, check=True)
    assert rc == 0 and "changed=" in out and "failed=0" in out, out[-3000:]
    assert live(organization) is None
    assert "org-%s" % organization in out, "the diff shows the predicted names"
    assert run("allocate", organization)[0] == 0
    rc, dummy, out = run("release", organization, check=True)
    assert rc == 0 and "failed=0" in out, out[-3000:]
    assert live(organization)[2] == "active"
    assert run("release", organization)[0] == 0


def test_check_mode_of_a_list_predicts_every_step_and_changes_nothing():
    organizations = [str(uuid.uuid4()) for dummy in range(3)]
    with db() as conn:
        events = conn.execute("SELECT count(*) FROM gateway_events").fetchone()[0]
    rc, dummy, out = run("allocate", check=True, organization_ids=organizations)
    assert rc == 0 and "failed=0" in out and "demiurge_allocation_rollback" not in out, out[-3000:]
    assert all("org-%s" % organization in out for organization in organizations), "the diff shows each one's names"
    assert all(live(organization) is None for organization in organizations)
    with db() as conn:
        assert conn.execute("SELECT count(*) FROM gateway_events").fetchone()[0] == events, "not even an event"


@pytest.mark.parametrize("value", [" 0b5e9b7c-1a2b-4c3d-8e9f-001122334455", "0b5e9b7c-1a2b-4c3d-8e9f-001122334455\n"])
def test_an_organization_id_with_white_space_is_refused(value):
    rc, dummy, out = run("allocate", value)
    assert rc != 0 and "is not a UUID" in out, out[-3000:]
    assert live("0b5e9b7c-1a2b-4c3d-8e9f-001122334455") is None


def test_a_gateway_left_resetting_is_recycled_by_reconcile():
    """A run of an older release died after ending the allocation: its gateway sat 'resetting' with
    the organization's data. Reconcile recycles it once it has been so for a lease's time."""
    with db() as conn:
        name, data_dir = conn.execute("SELECT name, metadata->>'data_dir' FROM gateways WHERE status = 'ready' "
                                      "ORDER BY created_at DESC LIMIT 1").fetchone()
        write_projects(data_dir)
        conn.execute("UPDATE gateways SET status = 'resetting', updated_at = now() - interval '1 hour' WHERE name = %s",
                     (name,))
    assert invariants.check(settled=True), "the checker sees the stuck gateway and its data"
    rc, dummy, out = run("reconcile")
    assert rc == 0 and "item=%s" % name in out, out[-3000:]
    with db() as conn:
        assert conn.execute("SELECT status FROM gateways WHERE name = %s", (name,)).fetchone()[0] == "ready"
    assert list(Path(data_dir).rglob("*.yjs")) == []


def test_reconcile_never_rolls_forward_onto_a_gateway_that_no_longer_holds_the_session():
    """A rollback that recycled the gateway but could not journal it (the database went away) left
    every step journaled done. Rolled forward, the organization was served by an empty gateway and
    stuck in release. Only the session the gateway holds may prove a roll-forward."""
    organization = uuid.uuid4()
    assert run("allocate", organization)[0] == 0
    with db() as conn:
        tmp_dir = conn.execute("SELECT g.metadata->>'tmp_dir' FROM organizations_gateways og JOIN gateways g "
                               "ON g.id = og.gateway_id WHERE og.organization_id = %s AND og.stopped_at IS NULL",
                               (str(organization),)).fetchone()[0]
    dead_run(organization)  # its run died before activation, every step journaled done
    os.unlink(os.path.join(tmp_dir, "project-config.json"))  # what the unjournaled recycle took away
    rc, dummy, out = run("reconcile")
    assert rc == 0, out[-3000:]
    assert live(organization) is None, "torn down, not rolled forward"
    rc, dummy, out = run("reconcile")
    assert rc == 0 and "changed=0" in out, out[-3000:]


def test_reconcile_never_rolls_forward_onto_a_gateway_that_died_since():
    """Its session file outlives it: a dead gateway serves nobody (nginx answered 502)."""
    organization = uuid.uuid4()
    assert run("allocate", organization)[0] == 0
    with db() as conn:
        name = conn.execute("SELECT g.name FROM organizations_gateways og JOIN gateways g ON g.id = og.gateway_id "
                            "WHERE og.organization_id = %s AND og.stopped_at IS NULL", (str(organization),)).fetchone()[0]
    dead_run(organization)
    os.kill(pid_of(name + ".pid"), signal.SIGKILL)
    rc, dummy, out = run("reconcile")
    assert rc == 0, out[-3000:]
    assert live(organization) is None, "torn down, not rolled forward"
    with db() as conn:
        assert conn.execute("SELECT status FROM gateways WHERE name = %s AND status <> 'retired'", (name,)).fetchone()[0] == "ready"


def test_reconcile_rolls_forward_a_run_that_died_after_its_handshake():
    organization = uuid.uuid4()
    assert run("allocate", organization)[0] == 0
    dead_run(organization)
    rc, dummy, out = run("reconcile")
    assert rc == 0, out[-3000:]
    assert live(organization)[2] == "active", "its gateway holds its session: rolled forward"
    assert run("release", organization)[0] == 0


def test_an_allocation_during_a_release_fails_naming_the_release():
    organization = uuid.uuid4()
    assert run("allocate", organization)[0] == 0
    with db() as conn:
        conn.execute("UPDATE organizations_gateways SET status = 'releasing', lease_holder = 'release-run-7', "
                     "lease_expires_at = now() + interval '1 minute' WHERE organization_id = %s AND stopped_at IS NULL",
                     (str(organization),))
    rc, dummy, out = run("allocate", organization)
    assert rc != 0 and "being released by run release-run-7" in out and "this run changed nothing" in out, out[-3000:]
    rc, dummy, out = run("release", organization, allocation_wait_seconds=1)
    assert rc != 0 and "release-run-7" in out, "a second release waits for the first, then names it"
    with db() as conn:
        conn.execute("UPDATE organizations_gateways SET lease_expires_at = now() WHERE organization_id = %s "
                     "AND stopped_at IS NULL", (str(organization),))
    rc, dummy, out = run("release", organization)
    assert rc == 0, "a release whose run died is taken over and finished"
    assert live(organization) is None


def test_one_organization_that_cannot_be_repaired_does_not_stop_the_others():
    stuck, other = uuid.uuid4(), uuid.uuid4()
    for organization in (stuck, other):
        assert run("allocate", organization)[0] == 0
        dead_run(organization, unfinished_step="handshake")
    client = PdnsClient(os.environ["DEMIURGE_TEST_PDNS_API_URL"], os.environ["DEMIURGE_TEST_PDNS_API_KEY"])
    records = {"zone": DOMAIN, "name": None, "organization": str(stuck), "type": "A", "include_subdomains": True,
               "wildcard": False, "state": "present", "records": ["127.0.0.1"], "ttl": 60, "force": True}
    ensure_rrsets(client, dict(records, owner="someone-else"), False)
    rc, dummy, out = run("reconcile")
    flat = plain(out)
    assert rc != 0 and "Reconcile repaired everything else but failed for 1 item" in flat, out[-3000:]
    assert "%s: step 'withdraw dns'" % stuck in flat and "owned by someone-else" in flat
    assert live(other) is None, "the other organization was repaired"
    with db() as conn:
        allocation_id = conn.execute("SELECT id FROM organizations_gateways WHERE organization_id = %s AND stopped_at IS NULL",
                                     (str(stuck),)).fetchone()[0]
    ensure_rrsets(client, dict(records, owner=str(allocation_id)), False)
    reconcile_twice()
    assert live(stuck) is None


def test_one_organization_whose_snapshot_fails_does_not_stop_data_sync():
    bad, good = uuid.uuid4(), uuid.uuid4()
    for organization in (bad, good):
        assert run("allocate", organization)[0] == 0
        write_projects(gateway_data_dir(organization))
    link = Path(gateway_data_dir(bad)) / "projects" / "p-1" / "escape"
    link.symlink_to("/etc/passwd")
    try:
        rc, dummy, out = run("data_sync")
        flat = plain(out)
        assert rc != 0 and "Data sync failed for 1 organization(s), the others were pushed" in flat, out[-3000:]
        summary = flat[flat.rfind("Data sync failed"):]
        assert "%s: " % bad in summary and "is not a regular file" in summary and str(good) not in summary, summary
        assert newest_projects(good) == set(PROJECTS)
    finally:
        link.unlink()
    for organization in (bad, good):
        assert run("release", organization)[0] == 0
