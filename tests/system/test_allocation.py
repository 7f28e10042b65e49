"""allocate.yml, release.yml and reconcile.yml run through ansible-runner (as AWX runs them)
against the test stack: real PostgreSQL, PowerDNS, nginx and gateway stand-ins."""

import json
import os
import signal
import subprocess
import threading
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pytest

from ansible_collections.demiurge.gateway.plugins.module_utils._daemon import Daemon
from ansible_collections.demiurge.gateway.plugins.module_utils._edge_route import ensure_route
from ansible_collections.demiurge.gateway.plugins.module_utils._paths import state_path
from ansible_collections.demiurge.gateway.plugins.module_utils._pdns_client import PdnsClient
from ansible_collections.demiurge.gateway.plugins.module_utils._pdns_rrset import ensure_rrsets
from invariants import db
from lifecycle import DOMAIN, ENV, ansible_playbook, eventually, gateway_data_dir, live, plain, read_tree, run, write_org_data

pytestmark = pytest.mark.usefixtures("invariants_hold")


def stats():
    with db() as conn:
        return dict(zip(("ready", "allocated", "resetting", "quarantined", "live"), conn.execute(
            "SELECT ready, allocated, resetting, quarantined, live_allocations FROM func_gateway_stats()").fetchone()))


def dns_status(organization):
    out = subprocess.run(["dig", "+norec", "+time=2", "+tries=1", "-p", os.environ["DEMIURGE_TEST_DNS_PORT"], "@127.0.0.1",
                          "org-%s.%s" % (organization, DOMAIN), "A"], capture_output=True, text=True, check=True).stdout
    return "NOERROR" if "status: NOERROR" in out and "ANSWER: 1" in out else ("NXDOMAIN" if "NXDOMAIN" in out else out)


def through_edge(organization, sub=None):
    host = "%sorg-%s.%s" % (sub + "." if sub else "", organization, DOMAIN)
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %header{x-gateway}", "-H", "Host: " + host,
                          "http://127.0.0.1:%s/collab/ping" % os.environ["DEMIURGE_TEST_HTTP_PORT"]],
                         capture_output=True, text=True, check=False).stdout.split(" ", 1)
    return int(out[0]), (out[1] if len(out) > 1 else "")


def gateway_file(name, flag):
    return Path(state_path(ENV, "gateways", name, flag))


def all_gateways(flag):
    count = int(os.environ["DEMIURGE_TEST_GATEWAYS"])
    return [gateway_file("gw-%03d" % n, flag) for n in range(1, count + 1)]


def assert_nothing_left(organization, baseline):
    assert live(organization) is None, "no live allocation"
    assert dns_status(organization) == "NXDOMAIN"
    assert through_edge(organization)[0] == 404
    assert stats()["live"] == baseline["live"]
    assert stats()["resetting"] == 0


@pytest.fixture(scope="module")
def witness():
    """An organization that stays allocated throughout: other orgs' failures must not disturb it."""
    organization = uuid.uuid4()
    rc, data, out = run("allocate", organization)
    assert rc == 0, out[-3000:]
    yield organization, data["gateway_allocation"]["gateway"]
    assert run("release", organization)[0] == 0


def test_allocate_serves_the_org_and_release_returns_the_gateway(witness):
    organization = uuid.uuid4()
    rc, data, out = run("allocate", organization)
    assert rc == 0, out[-3000:]
    result = data["gateway_allocation"]
    assert result["host_name"] == "org-%s.%s" % (organization, DOMAIN)
    assert dns_status(organization) == "NOERROR"
    assert through_edge(organization) == (200, result["gateway"])
    assert through_edge(organization, "uc-3") == (200, result["gateway"])
    assert live(organization)[2] == "active"
    rc, again, out = run("allocate", organization)
    assert rc == 0 and again["gateway_allocation"]["gateway"] == result["gateway"], "same gateway back"
    assert "changed=0" in out
    assert run("release", organization)[0] == 0
    assert live(organization) is None and dns_status(organization) == "NXDOMAIN"
    assert through_edge(organization)[0] == 404
    rc, dummy, out = run("release", organization)
    assert rc == 0 and "changed=0" in out, "releasing a released org is a no-op"


@pytest.mark.parametrize("playbook", ["allocate", "release"])
@pytest.mark.parametrize("value", ["not-a-uuid", "0b5e9b7c-1a2b-4c3d-8e9f", ""])
def test_bad_organization_id_changes_nothing(playbook, value):
    before = stats()
    rc, dummy, out = run(playbook, value)
    assert rc != 0 and "is not a UUID" in out, out[-3000:]
    assert stats() == before


MALFORMED_BATCHES = {
    "string": {"organization_ids": "0b5e9b7c-1a2b-4c3d-8e9f-001122334455"},
    "mapping": {"organization_ids": {"0b5e9b7c-1a2b-4c3d-8e9f-001122334455": True}},
    "not-all-strings": {"organization_ids": ["0b5e9b7c-1a2b-4c3d-8e9f-001122334455", None]},
    "with-organization_id": {"organization_ids": ["0b5e9b7c-1a2b-4c3d-8e9f-001122334455"],
                             "organization_id": "0b5e9b7c-1a2b-4c3d-8e9f-001122334456"},
    # Each was once dropped silently: neither allocated nor reported, rc 0.
    "entries-not-uuids": {"organization_ids": ["0b5e9b7c-1a2b-4c3d-8e9f-001122334455\n", " 0b5e9b7c-1a2b-4c3d-8e9f-001122334456",
                                               "0b5e9b7c-1a2b-4c3d-8e9f-001122334457,", "0b5e9b7c-1a2b-4c3d-8e9f-00112233445:",
                                               "0b5e9b7c-1a2b-4c3d-8e9f-001122334458"]},
}


# Both playbooks import the same check: every kind through allocate.yml, one through release.yml.
@pytest.mark.parametrize("playbook, kind", [("allocate", kind) for kind in MALFORMED_BATCHES]
                         + [("release", "string"), ("release", "entries-not-uuids")])
def test_a_malformed_batch_changes_nothing(playbook, kind):
    before = stats()
    rc, dummy, out = run(playbook, **MALFORMED_BATCHES[kind])
    assert rc != 0, out[-3000:]
    if kind == "entries-not-uuids":
        named = plain(out)
        assert all(bad in named for bad in ('334455\\n"', '" 0b5e9b7c', '334457,"', '445:"')), out[-3000:]
        assert "334458" not in named.split("are not UUIDs")[1], "the good entry is not named"
    assert "Step 'organization list' on localhost" in plain(out) and "Nothing was changed" in plain(out), out[-3000:]
    assert "allocation-" not in out, "no organization's steps ran"
    assert stats() == before


def test_upper_case_organization_id_is_canonicalized(witness):
    organization = uuid.uuid4()
    rc, data, out = run("allocate", str(organization).upper())
    assert rc == 0, out[-3000:]
    result = data["gateway_allocation"]
    assert result["organization"] == str(organization)
    assert result["host_name"] == "org-%s.%s" % (organization, DOMAIN)
    assert through_edge(organization) == (200, result["gateway"])
    assert run("release", str(organization).upper())[0] == 0
    assert live(organization) is None and through_edge(organization)[0] == 404


def test_bad_role_input_fails_before_the_first_step():
    organization, before = uuid.uuid4(), stats()
    rc, dummy, out = run("allocate", organization, allocation_lease_seconds="soon")
    assert rc != 0 and "allocation_lease_seconds" in out, out[-3000:]
    assert live(organization) is None and stats() == before


FAULTS = ["powerdns refuses the key", "powerdns is down", "nginx config broken by a foreign file",
          "nginx is not running", "handshake answers 500", "the gateway is unhealthy",
          "the platform API refuses the token", "the platform API hangs", "database unreachable during a step"]


def fault(name):
    """(extra vars, injection, message the failure must carry, failed step)."""
    pdns_url = os.environ["DEMIURGE_TEST_PDNS_API_URL"]
    return {
        "powerdns refuses the key": ({"demiurge_pdns_api": {"api_url": pdns_url, "api_key": "wrong"}}, None,
                                     "refused the API key", "dns"),
        "powerdns is down": ({"demiurge_pdns_api": {"api_url": "http://127.0.0.1:9", "api_key": "x", "retries": 1}}, None,
                             "did not answer", "dns"),
        "nginx config broken by a foreign file": ({}, "foreign", "already broken before this change", "route"),
        "nginx is not running": ({}, "nginx-down", "is not running", "route"),
        "handshake answers 500": ({}, "fail-handshake", "HTTP 500", "handshake"),
        # No edge reaches a gateway that does not answer: it is never handed out.
        "the gateway is unhealthy": ({"allocation_gateway_health_timeout": 2}, "unhealthy",
                                     "was not answered by that gateway within 5.0s: HTTP 503, nginx reached", "route"),
        # The gateway answers 200 {} all the same, as the real one does: only the pool shows nothing was exchanged.
        "the platform API refuses the token": ({}, "api-refuses", "never exchanged its token", "handshake"),
        # A hang, not a refusal: the gateway's call to the API times out and the handshake with it.
        "the platform API hangs": ({}, "api-hangs", "Gateway at", "handshake"),
        # The step's own database connection (its journal) is lost; the rescue's is not.
        "database unreachable during a step": ({"__allocation_journal_options": {
            "login_port": 9, "login_password": "x", "lease_seconds": 60, "connect_timeout": 2}}, None,
            "Could not connect to PostgreSQL", "dns"),
    }[name]


class Injected:
    """Apply one fault to the running stack and take it back afterwards."""

    def __init__(self, injection):
        self.injection = injection
        self.routes = Path(state_path(ENV, "nginx", "routes"))
        self.nginx_pid = Path(state_path(ENV, "nginx", "run", "nginx.pid"))
        self.files, self.saved_pid, self.stopped = [], None, None

    def __enter__(self):
        if self.injection == "foreign":
            self.files.append(self.routes / "zz-foreign.conf")
        elif self.injection == "nginx-down":
            # Without its pid file the edge cannot signal nginx: the reload fails.
            self.saved_pid = self.nginx_pid.read_text()
            self.nginx_pid.unlink()
        elif self.injection == "api-refuses":
            self.files.append(Path(state_path(ENV, "platform-api", "refuse-config")))
        elif self.injection == "api-hangs":
            self.stopped = int(Path(state_path(ENV, "run", "platform-api.pid")).read_text().split()[0])
            os.kill(self.stopped, signal.SIGSTOP)
        elif self.injection in ("fail-handshake", "unhealthy"):
            self.files.extend(all_gateways("fail-handshake"))
            if self.injection == "unhealthy":
                self.files.extend(all_gateways("unhealthy"))
        for path in self.files:
            path.write_text("broken;;\n")
        return self

    def __exit__(self, *exc):
        for path in self.files:
            path.unlink()
        if self.saved_pid is not None:
            self.nginx_pid.write_text(self.saved_pid)
        if self.stopped is not None:
            os.kill(self.stopped, signal.SIGCONT)


@pytest.mark.parametrize("name", FAULTS)
def test_each_failing_step_is_rolled_back_completely(name, witness):
    extravars, injection, message, step = fault(name)
    organization, baseline = uuid.uuid4(), stats()
    with Injected(injection):
        rc, dummy, out = run("allocate", organization, **extravars)
    assert rc != 0
    assert "was rolled back" in out and "step '%s'" % step in out and message in out, out[-3000:]
    assert_nothing_left(organization, baseline)
    witness_org, witness_gateway = witness
    assert through_edge(witness_org) == (200, witness_gateway), "nginx still serves the other orgs"
    with db() as conn:
        # A failure that is the gateway's counts against it, and only such a failure does.
        faults = conn.execute(
            "SELECT g.faults_in_a_row, (SELECT count(*) FROM gateway_events e WHERE e.kind = 'gateway.fault' "
            "AND e.allocation_id = og.id AND e.step = %s) FROM organizations_gateways og JOIN gateways g ON g.id = og.gateway_id "
            "WHERE og.organization_id = %s", (step, str(organization))).fetchone()
        gateways_fault = injection in ("fail-handshake", "unhealthy", "api-refuses", "api-hangs")
        assert faults == ((1, 1) if gateways_fault else (0, 0)), faults
        # Each case starts from a gateway without faults (every case claims the oldest ready one).
        conn.execute("UPDATE gateways SET faults_in_a_row = 0")
    after = stats()
    if injection != "unhealthy":
        assert after["ready"] == baseline["ready"], "the gateway is back in the pool"
        return
    assert after["quarantined"] == baseline["quarantined"] + 1 and after["ready"] == baseline["ready"] - 1
    with db() as conn:
        # The gateway this allocation held, quarantined with the reason its recycle gave.
        gateway_id, reason = conn.execute(
            "SELECT g.id, g.status_reason FROM gateways g JOIN organizations_gateways og ON og.gateway_id = g.id "
            "WHERE og.organization_id = %s AND g.status = 'quarantined'", (str(organization),)).fetchone()
        assert "did not answer GET /collab/ping with 200" in reason
        conn.execute("CALL proc_gateways_set_ready(%s)", (gateway_id,))


def test_a_gateway_that_keeps_failing_its_handshake_is_set_aside(witness):
    """The oldest ready gateway is claimed first: failing, it would be claimed again and again."""
    with db() as conn:
        limit = conn.execute("SELECT value FROM pool_settings WHERE name = 'gateway_fault_limit'").fetchone()[0]
        gateway_id, name = conn.execute("SELECT id, name FROM gateways WHERE status = 'ready' ORDER BY created_at, id LIMIT 1").fetchone()
    broken, baseline = gateway_file(name, "fail-handshake"), stats()
    broken.write_text("")
    try:
        for attempt in range(limit):
            rc, dummy, out = run("allocate", uuid.uuid4())
            assert rc != 0 and "step 'handshake'" in out and "HTTP 500" in out, out[-2000:]
        with db() as conn:
            status, reason = conn.execute("SELECT status, status_reason FROM gateways WHERE name = %s", (name,)).fetchone()
        assert status == "quarantined" and "failed %d allocations in a row" % limit in reason and "HTTP 500" in reason, reason
        organization = uuid.uuid4()
        rc, data, out = run("allocate", organization)
        assert rc == 0 and data["gateway_allocation"]["gateway"] != name, out[-2000:]
        assert run("release", organization)[0] == 0
    finally:
        broken.unlink()
        with db() as conn:
            conn.execute("CALL proc_gateways_set_ready(%s)", (gateway_id,))
            conn.execute("UPDATE gateways SET faults_in_a_row = 0")
    assert stats() == baseline


def test_a_session_planted_in_a_ready_gateway_is_scrubbed_by_reconcile(witness):
    """A ready gateway re-enters at its next start whatever session its /tmp holds: reconcile finds
    one there, sets the gateway aside and recycles it."""
    with db() as conn:
        name, tmp_dir = conn.execute("SELECT name, metadata->>'tmp_dir' FROM gateways WHERE status = 'ready' "
                                     "ORDER BY created_at DESC LIMIT 1").fetchone()
    planted = str(uuid.uuid4())
    (Path(tmp_dir) / "project-config.json").write_text(json.dumps({"organization_id": planted, "organization_token": "t"}))
    baseline = stats()
    rc, dummy, out = run("reconcile")
    assert rc == 0, out[-3000:]
    assert not (Path(tmp_dir) / "project-config.json").exists()
    with db() as conn:
        status, reason = conn.execute("SELECT g.status, e.cause FROM gateway_events e JOIN gateways g ON g.id = e.gateway_id "
                                      "WHERE g.name = %s AND g.status <> 'retired' AND e.kind = 'gateway.quarantined' "
                                      "ORDER BY e.id DESC LIMIT 1", (name,)).fetchone()
    assert status == "ready" and "held organization %s's session" % planted in reason, (status, reason)
    assert stats() == baseline
    rc, dummy, out = run("reconcile")
    assert rc == 0 and "changed=0" in out, "nothing left to do"


def run_parallel(playbook, organizations):
    results = [None] * len(organizations)

    def one(index):
        results[index] = run(playbook, organizations[index])

    threads = [threading.Thread(target=one, args=(index,)) for index in range(len(organizations))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    return results


def test_thirty_parallel_allocations_over_twenty_gateways(witness):
    with db() as conn:
        ready = conn.execute("SELECT ready FROM func_gateway_stats()").fetchone()[0]
    organizations = [uuid.uuid4() for dummy in range(ready + 10)]
    results = run_parallel("allocate", organizations)
    try:
        outcomes = Counter("ok" if rc == 0 else ("exhausted" if "Pool exhausted" in out and "changed nothing" in out else "other")
                           for rc, dummy, out in results)
        unexpected = [out[-2500:] for rc, dummy, out in results if rc and "Pool exhausted" not in out]
        assert outcomes == {"ok": ready, "exhausted": 10}, "\n\n".join(unexpected)
        with db() as conn:
            rows = conn.execute("SELECT organization_id, gateway_id FROM organizations_gateways WHERE stopped_at IS NULL").fetchall()
        assert len({org for org, dummy in rows}) == len(rows) and len({gw for dummy, gw in rows}) == len(rows)
        served = Counter(through_edge(org)[1] for org, (rc, dummy, out) in zip(organizations, results) if rc == 0)
        assert len(served) == ready and set(served.values()) == {1}, "each org reaches its own gateway"
    finally:
        winners = [org for org, (rc, dummy, out) in zip(organizations, results) if rc == 0]
        assert all(rc == 0 for rc, dummy, out in run_parallel("release", winners))
    assert stats()["ready"] == ready


def test_ten_parallel_allocations_for_one_org_give_it_one_gateway(witness):
    organization, baseline = uuid.uuid4(), stats()
    results = run_parallel("allocate", [organization] * 10)
    assert all(rc == 0 for rc, dummy, out in results), [out[-1500:] for rc, dummy, out in results if rc]
    gateways = {data["gateway_allocation"]["gateway"] for rc, data, out in results}
    assert len(gateways) == 1
    assert stats()["live"] == baseline["live"] + 1
    assert through_edge(organization) == (200, gateways.pop())
    assert run("release", organization)[0] == 0
    assert_nothing_left(organization, baseline)


def test_data_follows_the_org_to_another_gateway_byte_for_byte(witness):
    organization, filler = uuid.uuid4(), uuid.uuid4()
    assert run("allocate", organization)[0] == 0
    first_dir = gateway_data_dir(organization)
    written = write_org_data(first_dir, ["p-1", "p-2", "p-3"])
    rc, dummy, out = run("data_sync")
    assert rc == 0, out[-2000:]
    assert run("data_sync")[2].count("changed=0") == 1, "unchanged data is not pushed again"
    assert run("release", organization)[0] == 0
    assert read_tree(first_dir) == {}, "the reset gateway keeps nothing of the organization"
    assert run("allocate", filler)[0] == 0, "the filler takes the first ready gateway"
    try:
        rc, data, out = run("allocate", organization)
        assert rc == 0, out[-2000:]
        second_dir = gateway_data_dir(organization)
        assert second_dir != first_dir
        assert read_tree(second_dir) == written
    finally:
        assert run("release", organization)[0] == 0
        assert run("release", filler)[0] == 0


def standin_state(organization, edits=None):
    """What the organization's gateway holds in memory; edits are added to it first (unsaved until it stops)."""
    with db() as conn:
        api_url = conn.execute("SELECT g.api_url FROM organizations_gateways og JOIN gateways g ON g.id = og.gateway_id "
                               "WHERE og.organization_id = %s AND og.stopped_at IS NULL", (str(organization),)).fetchone()[0]
    request = urllib.request.Request(api_url + "/standin/state", method="POST" if edits else "GET",
                                     data=json.dumps(edits).encode() if edits else None)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def test_the_release_snapshot_holds_what_the_gateway_saves_when_it_stops(witness):
    """The gateway saves what it holds in memory when it stops: the release stops it before taking the
    snapshot, so that save travels with the organization."""
    organization = uuid.uuid4()
    assert run("allocate", organization)[0] == 0
    assert standin_state(organization, {"unsaved": "kept"})["state"]["edits"] == {"unsaved": "kept"}
    assert read_tree(gateway_data_dir(organization)) == {}, "nothing on disk until the gateway stops"
    rc, dummy, out = run("release", organization)
    assert rc == 0, out[-2000:]
    rc, dummy, out = run("allocate", organization)
    assert rc == 0, out[-2000:]
    try:
        assert standin_state(organization)["state"]["edits"] == {"unsaved": "kept"}
    finally:
        assert run("release", organization)[0] == 0


def test_a_release_resumed_after_its_gateway_served_again_pushes_again(witness):
    """A release stopped after its snapshot leaves the gateway stopped; started again (a converge of
    its host), it serves the organization, whose new work must not be lost to the resumed release."""
    organization = uuid.uuid4()
    assert run("allocate", organization)[0] == 0
    standin_state(organization, {"before": "the snapshot"})
    refused = {"api_url": os.environ["DEMIURGE_TEST_PDNS_API_URL"], "api_key": "wrong"}
    rc, dummy, out = run("release", organization, demiurge_pdns_api=refused)
    assert rc != 0 and "withdraw dns" in out, out[-2000:]
    with db() as conn:
        service = conn.execute("SELECT g.metadata->'service'->'daemon' FROM organizations_gateways og JOIN gateways g "
                               "ON g.id = og.gateway_id WHERE og.organization_id = %s AND og.stopped_at IS NULL",
                               (str(organization),)).fetchone()[0]
    Daemon.from_options(service).start()
    # It re-enters the session once its ready report is answered.
    eventually("the gateway serves the organization again", lambda: standin_state(organization)["organization"] == str(organization))
    standin_state(organization, {"after": "the snapshot"})
    rc, dummy, out = run("release", organization)
    assert rc == 0, out[-2000:]
    assert run("allocate", organization)[0] == 0
    try:
        assert standin_state(organization)["state"]["edits"] == {"before": "the snapshot", "after": "the snapshot"}
    finally:
        assert run("release", organization)[0] == 0


def test_shrinking_data_stops_the_release_and_loses_nothing(witness):
    organization = uuid.uuid4()
    assert run("allocate", organization)[0] == 0
    data_dir = gateway_data_dir(organization)
    write_org_data(data_dir, ["p-1", "p-2"])
    assert run("data_sync")[0] == 0
    for path in (Path(data_dir) / "projects" / "p-2").iterdir():
        path.unlink()
    (Path(data_dir) / "projects" / "p-2").rmdir()
    rc, dummy, out = run("release", organization)
    assert rc != 0 and "would drop projects present in snapshot" in out and "p-2" in out
    assert live(organization)[2] == "releasing", "the release stopped before anything was withdrawn"
    assert "The gateway was started again and serves the organization" in plain(out)
    assert dns_status(organization) == "NOERROR" and through_edge(organization)[0] == 200
    assert standin_state(organization)["organization"] == str(organization), "it re-entered the organization's session"
    rc, dummy, out = run("reconcile")
    assert rc != 0 and "would drop projects present in snapshot" in out, "reconcile resumes the release and stops the same way"
    assert through_edge(organization)[0] == 200, "and the gateway it stopped for the snapshot serves again"
    write_org_data(data_dir, ["p-1", "p-2"])
    assert run("release", organization)[0] == 0
    assert live(organization) is None


def test_corrupt_snapshot_fails_the_allocation_and_changes_nothing(witness):
    organization, baseline = uuid.uuid4(), stats()
    assert run("allocate", organization)[0] == 0
    write_org_data(gateway_data_dir(organization), ["p-1"])
    assert run("release", organization)[0] == 0
    snapshot = sorted((Path(state_path(ENV, "org-data")) / str(organization)).iterdir())[-1]
    victim = snapshot / "files" / "projects" / "p-1" / "doc.yjs"
    content = bytearray(victim.read_bytes())
    content[100] ^= 0xFF
    victim.write_bytes(bytes(content))
    rc, dummy, out = run("allocate", organization)
    assert rc != 0 and "step 'restore'" in out and "is corrupt" in out and "was rolled back" in out, out[-2000:]
    assert_nothing_left(organization, baseline)


def test_reconcile_removes_orphan_records_and_routes_and_keeps_live_ones(witness):
    """A record and a route whose owner is no live allocation (a run that died before journaling them,
    say) are drift: reconcile removes them and leaves every live organization alone."""
    orphan, dead_owner = uuid.uuid4(), str(uuid.uuid4())
    client = PdnsClient(os.environ["DEMIURGE_TEST_PDNS_API_URL"], os.environ["DEMIURGE_TEST_PDNS_API_KEY"])
    ensure_rrsets(client, {"zone": DOMAIN, "name": None, "organization": str(orphan), "type": "A", "include_subdomains": True,
                           "wildcard": False, "state": "present", "records": ["127.0.0.1"], "ttl": 60,
                           "owner": dead_owner, "force": False}, False)
    upstream = "127.0.0.1:%d" % (int(os.environ["DEMIURGE_TEST_PORT_BASE"]) + 501)

    def run_command(argv):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    ensure_route({"config_root": state_path(ENV, "nginx"), "config_file": None, "organization": str(orphan),
                  "domain": DOMAIN, "upstream": upstream, "state": "present", "owner": dead_owner, "force": False,
                  "listen_url": "http://127.0.0.1:%s" % os.environ["DEMIURGE_TEST_HTTP_PORT"], "nginx_binary": "/usr/sbin/nginx",
                  "reload_timeout": 10.0, "lock_timeout": 30.0, "reach_path": None, "reach_timeout": 5}, False, run_command, print)
    assert dns_status(orphan) == "NOERROR" and through_edge(orphan)[0] == 200
    rc, dummy, out = run("reconcile")
    assert rc == 0, out[-3000:]
    assert dns_status(orphan) == "NXDOMAIN" and through_edge(orphan)[0] == 404
    witness_org, witness_gateway = witness
    assert dns_status(witness_org) == "NOERROR" and through_edge(witness_org) == (200, witness_gateway)
    rc, dummy, out = run("reconcile")
    assert rc == 0 and "changed=0" in out, "nothing left to repair"


def test_without_an_inventory_the_first_task_says_what_is_missing(tmp_path):
    """An operator who runs an installed playbook from another directory, with no inventory."""
    before = stats()
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    proc = subprocess.run(
        [ansible_playbook(), "demiurge.gateway.allocate",
         "-e", "organization_id=%s" % uuid.uuid4()],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        env={"ANSIBLE_COLLECTIONS_PATH": os.environ["ANSIBLE_COLLECTIONS_PATH"], "PATH": os.environ["PATH"],
             "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg"), "HOME": os.environ.get("HOME", "/root")})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "demiurge_zone is not set" in out and "plugin: demiurge.gateway.local_stack" in out, out[-3000:]
    assert "docs/howto-inventory.md" in out
    assert stats() == before


def foreign_route(organization, owner):
    """A route for organization on the edge, owned by another allocation."""
    def run_command(argv):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    ensure_route({"config_root": state_path(ENV, "nginx"), "config_file": None, "organization": str(organization),
                  "domain": DOMAIN, "upstream": "127.0.0.1:%d" % (int(os.environ["DEMIURGE_TEST_PORT_BASE"]) + 501),
                  "state": "present", "owner": owner, "force": False,
                  "listen_url": "http://127.0.0.1:%s" % os.environ["DEMIURGE_TEST_HTTP_PORT"], "nginx_binary": "/usr/sbin/nginx",
                  "reload_timeout": 10.0, "lock_timeout": 30.0, "reach_path": None, "reach_timeout": 5}, False, run_command, print)


def test_a_batch_rolls_back_only_the_organization_that_failed(witness):
    """allocate.yml and release.yml with organization_ids: each organization's steps and rollback
    are its own, and the result of each is published."""
    good, bad, baseline = [uuid.uuid4() for dummy in range(4)], uuid.uuid4(), stats()
    # Another allocation owns bad's route: its route step fails after its names were published.
    foreign_route(bad, str(uuid.uuid4()))
    rc, data, out = run("allocate", organization_ids=[str(o) for o in good + [bad]], forks=5)
    try:
        assert rc != 0, out[-3000:]
        published = data["gateway_allocations"]
        assert published[str(bad)]["failed"] and "step 'route'" in published[str(bad)]["cause"], published
        assert "Allocation for organization %s was rolled back" % bad in plain(out)
        assert live(bad) is None and dns_status(bad) == "NXDOMAIN", "bad's claim and names are undone"
        served = {through_edge(o)[1] for o in good}
        assert {published[str(o)]["gateway"] for o in good} == served and len(served) == len(good)
        assert all(live(o)[2] == "active" and dns_status(o) == "NOERROR" for o in good)
        assert stats()["live"] == baseline["live"] + len(good)
    finally:
        rc, data, out = run("release", organization_ids=[str(o) for o in good], forks=5)
    assert rc == 0, out[-3000:]
    for organization in good:
        assert_nothing_left(organization, baseline)
    rc, dummy, out = run("reconcile")  # the foreign route is an orphan
    assert rc == 0 and through_edge(bad)[0] == 404, out[-3000:]
