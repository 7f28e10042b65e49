"""The life cycle with the platform's real gateway (../shared/realgw/gateway.js, run by Node.js), as
the collection runs a gateway build: in a private mount namespace with its own /tmp and /data,
against the test stack's platform API stand-in over https.

Three real gateways (rg-001 to rg-003) join the test stack's pool for this module; the stand-ins
are set aside (quarantined, then put back) so that every claim takes a real gateway. Every
success is proven by an independent signal: the handshake by the token exchange recorded in the
pool and the session file the gateway wrote in its own /tmp; the recycle by a new process, an
empty /data and a /tmp without a session; the route by nginx reaching the gateway. The life-cycle
invariants (tests/system/invariants.py) run after each test.
"""

import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from invariants import db, session_of
from lifecycle import DOMAIN, ENV, INVENTORY, REPO, ansible_playbook, live, run, run_and_kill, runner_env, wait_leases_expired

from ansible_collections.demiurge.gateway.plugins.module_utils._paths import state_path

BUILD = Path(os.environ.get("DEMIURGE_TEST_REALGW", REPO.parent / "shared" / "realgw" / "gateway.js"))
NODE = shutil.which("node")
if not BUILD.is_file():
    pytest.skip("the real gateway build %s is absent: the real-gateway tests cannot run" % BUILD, allow_module_level=True)
if NODE is None:
    pytest.skip("Node.js is not installed: the real gateway %s cannot run" % BUILD, allow_module_level=True)
NODE_VERSION = subprocess.run([NODE, "--version"], capture_output=True, text=True, check=False).stdout.strip()
if int(NODE_VERSION.lstrip("v").split(".")[0] or 0) < 20:
    pytest.skip("the real gateway is built for Node.js 20; %s is %s" % (NODE, NODE_VERSION), allow_module_level=True)

pytestmark = pytest.mark.usefixtures("invariants_hold")

NAMES = ["rg-001", "rg-002", "rg-003"]
PORT_BASE = int(os.environ["DEMIURGE_TEST_PORT_BASE"]) + 700
GATEWAYS = Path(state_path(ENV, "gateways"))


def converge(state, names=tuple(NAMES), verbose=False, build=BUILD):
    """Run the collection's role for gateway hosts with the build, as an operator would."""
    play = [{"name": "Real gateways", "hosts": "localhost", "gather_facts": False, "roles": [{
        "role": "demiurge.gateway.gateway_standin", "gateway_standin_names": list(names), "gateway_standin_name_prefix": "rg-",
        "gateway_standin_port_base": PORT_BASE, "gateway_standin_build": str(build), "gateway_standin_node": NODE,
        "gateway_standin_state": state}]}]
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as playbook:
        json.dump(play, playbook)
        playbook.flush()
        argv = [ansible_playbook(), playbook.name] + [arg for source in INVENTORY for arg in ("-i", source)]
        proc = subprocess.run(argv + (["-vvv"] if verbose else []), capture_output=True, text=True, check=False,
                              env=dict(os.environ, **runner_env()))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return proc.stdout + proc.stderr


def pid(name):
    return int(Path(state_path(ENV, "run", name + ".pid")).read_text().split()[0])


def tmp_of(name):
    return GATEWAYS / name / "tmp"


def data_of(name):
    return GATEWAYS / name / "data"


def gateway_of(organization):
    with db() as conn:
        return conn.execute("SELECT g.name FROM organizations_gateways og JOIN gateways g ON g.id = og.gateway_id "
                            "WHERE og.organization_id = %s AND og.stopped_at IS NULL", (str(organization),)).fetchone()[0]


def exchanged(organization):
    """Whether the platform API exchanged the handshake token of the organization's live allocation."""
    with db() as conn:
        row = conn.execute("SELECT tmp_handshake_token_used_at IS NOT NULL FROM organizations_gateways "
                           "WHERE organization_id = %s AND stopped_at IS NULL", (str(organization),)).fetchone()
    return bool(row and row[0])


def through_edge(organization):
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: org-%s.%s" % (organization, DOMAIN),
                          "http://127.0.0.1:%s/collab/ping" % os.environ["DEMIURGE_TEST_HTTP_PORT"]],
                         capture_output=True, text=True, check=False).stdout
    return int(out or 0)


def status(name):
    with db() as conn:
        return conn.execute("SELECT status, status_reason FROM gateways WHERE name = %s AND status <> 'retired'",
                            (name,)).fetchone()


@pytest.fixture(scope="module", autouse=True)
def real_gateways():
    """rg-001..003 running the build and ready in the pool, the stand-ins set aside meanwhile."""
    verbose = converge("started", verbose=True)
    with db() as conn:
        aside = [row[0] for row in conn.execute(
            "UPDATE gateways SET status = 'quarantined', status_reason = 'set aside for the real-gateway tests', "
            "updated_at = now() WHERE status = 'ready' AND name NOT LIKE 'rg-%' RETURNING id").fetchall()]
    try:
        yield verbose
    finally:
        with db() as conn:
            for gateway_id in aside:
                conn.execute("CALL proc_gateways_set_ready(%s)", (gateway_id,))
        converge("stopped")
        with db() as conn:
            conn.execute("UPDATE gateways SET status = 'retired', updated_at = now() WHERE name LIKE 'rg-%' "
                         "AND status <> 'retired' AND NOT EXISTS (SELECT 1 FROM organizations_gateways og "
                         "WHERE og.gateway_id = gateways.id AND og.stopped_at IS NULL)")


def test_the_full_cycle_with_the_real_gateway():
    organization = uuid.uuid4()
    rc, data, out = run("allocate", organization)
    assert rc == 0, out[-3000:]
    name = gateway_of(organization)
    assert name in NAMES and exchanged(organization), "the platform API exchanged this allocation's token"
    assert session_of(tmp_of(name)) == str(organization), "the gateway wrote the organization's session in its own /tmp"
    assert through_edge(organization) == 200
    before = pid(name)
    rc, dummy, out = run("release", organization)
    assert rc == 0, out[-3000:]
    assert pid(name) != before, "a new process: nothing of the organization is left in memory"
    assert sorted(os.listdir(tmp_of(name))) == ["vpn-config.json"] and not any(data_of(name).rglob("*"))
    assert status(name) == ("ready", None) and through_edge(organization) == 404


def test_a_token_the_platform_api_refuses_is_no_allocation():
    """The real gateway answers 200 {} when the API refuses its token: the allocation must not count."""
    organization = uuid.uuid4()
    refuse = Path(state_path(ENV, "platform-api", "refuse-config"))
    refuse.write_text("")
    try:
        rc, dummy, out = run("allocate", organization)
    finally:
        refuse.unlink()
    assert rc != 0 and "never exchanged its token" in out and "was rolled back" in out, out[-3000:]
    assert live(organization) is None
    for name in NAMES:
        assert session_of(tmp_of(name)) is None and status(name)[0] == "ready"


def test_a_platform_api_that_hangs_fails_the_handshake():
    organization = uuid.uuid4()
    api = int(Path(state_path(ENV, "run", "platform-api.pid")).read_text().split()[0])
    os.kill(api, signal.SIGSTOP)
    try:
        rc, dummy, out = run("allocate", organization)
    finally:
        os.kill(api, signal.SIGCONT)
    assert rc != 0 and "step 'handshake'" in out and "was rolled back" in out, out[-3000:]
    assert live(organization) is None
    # The gateway's own call may still be answered once the API runs again: it is refused (the
    # allocation ended), so no session appears.
    for name in NAMES:
        assert session_of(tmp_of(name)) is None


def test_the_next_organization_reads_nothing_of_the_previous_one():
    first = uuid.uuid4()
    assert run("allocate", first)[0] == 0
    name = gateway_of(first)
    # What the first organization's gateway holds, in its /data and its /tmp.
    (data_of(name) / ("gateway-state-%s.json" % first)).write_text('{"tokens": ["first-org-secret"]}')
    assert run("release", first)[0] == 0
    with db() as conn:
        # Only the recycled gateway is ready: the next claim must take it.
        conn.execute("UPDATE gateways SET status = 'quarantined', status_reason = 'test' WHERE name LIKE 'rg-%%' AND name <> %s "
                     "AND status = 'ready'", (name,))
    second = uuid.uuid4()
    try:
        rc, dummy, out = run("allocate", second)
    finally:
        with db() as conn:
            for other in set(NAMES) - {name}:
                conn.execute("UPDATE gateways SET status = 'ready', status_reason = NULL WHERE name = %s "
                             "AND status = 'quarantined'", (other,))
    assert rc == 0 and gateway_of(second) == name, out[-3000:]
    assert session_of(tmp_of(name)) == str(second)
    readable = b"".join(path.read_bytes() for root in (data_of(name), tmp_of(name)) for path in root.rglob("*") if path.is_file())
    assert str(first).encode() not in readable and b"first-org-secret" not in readable
    assert run("release", second)[0] == 0


def test_two_gateways_on_one_host_share_no_session():
    organizations = [uuid.uuid4(), uuid.uuid4()]
    for organization in organizations:
        assert run("allocate", organization)[0] == 0
    names = [gateway_of(organization) for organization in organizations]
    assert names[0] != names[1]
    for organization, name in zip(organizations, names):
        assert session_of(tmp_of(name)) == str(organization)
    assert not Path("/tmp/project-config.json").exists(), "no gateway wrote into the host's /tmp"
    for organization in organizations:
        assert run("release", organization)[0] == 0


@pytest.mark.kill_matrix
@pytest.mark.parametrize("offset", [0, 0.3, 0.8])
def test_a_kill_during_the_recycle_is_repaired_by_reconcile(offset):
    """The whole process tree killed as the recycle starts and while it stops, wipes and starts the
    gateway; reconcile twice (the second changes nothing), and nothing of the organization is left."""
    organization = uuid.uuid4()
    assert run("allocate", organization)[0] == 0
    name = gateway_of(organization)
    rc, out = run_and_kill("release", "Recycle the gateway", offset, organization, allocation_lease_seconds=1)
    assert rc in (0, -signal.SIGKILL), out[-3000:]
    wait_leases_expired()
    rc, dummy, out = run("reconcile")
    assert rc == 0, out[-3000:]
    rc, dummy, out = run("reconcile")
    assert rc == 0 and "changed=0" in out, out[-3000:]
    assert live(organization) is None
    assert status(name)[0] == "ready", status(name)
    assert session_of(tmp_of(name)) is None and not any(data_of(name).rglob("*"))
    assert through_edge(organization) == 404


def plant_session(name):
    """A session in a ready gateway's /tmp, as one left by something other than this collection."""
    planted = str(uuid.uuid4())
    (tmp_of(name) / "project-config.json").write_text(json.dumps(
        {"organization_id": planted, "organization_name": "planted", "gateway_id": "x", "organization_token": "planted-token",
         "projects": [], "members": []}))
    return planted


def ready_real_gateway():
    with db() as conn:
        return conn.execute("SELECT name FROM gateways WHERE status = 'ready' AND name LIKE 'rg-%' ORDER BY name LIMIT 1").fetchone()[0]


def test_a_session_planted_in_a_ready_gateway_is_found_and_scrubbed_by_reconcile():
    name = ready_real_gateway()
    planted, before = plant_session(name), pid(name)
    for attempt in range(2):
        rc, dummy, out = run("reconcile")
        assert rc == 0, out[-3000:]
    with db() as conn:
        reason = conn.execute("SELECT e.cause FROM gateway_events e JOIN gateways g ON g.id = e.gateway_id WHERE g.name = %s "
                              "AND e.kind = 'gateway.quarantined' ORDER BY e.id DESC LIMIT 1", (name,)).fetchone()[0]
    assert "held organization %s's session" % planted in reason, reason
    assert status(name) == ("ready", None) and pid(name) != before
    assert sorted(os.listdir(tmp_of(name))) == ["vpn-config.json"]


def test_a_new_build_recycles_the_ready_gateways_instead_of_restarting_them(tmp_path):
    """Restarted, a real gateway re-enters whatever session its /tmp holds; a new build must not give
    a ready gateway the session planted there."""
    name = ready_real_gateway()
    planted, before = plant_session(name), pid(name)
    rebuilt = tmp_path / "gateway.js"
    rebuilt.write_bytes(BUILD.read_bytes() + b"\n// rebuilt\n")
    try:
        converge("started", build=rebuilt)
        assert pid(name) != before and status(name) == ("ready", None)
        assert session_of(tmp_of(name)) is None, "the planted session %s was not re-entered" % planted
    finally:
        converge("started")


def test_a_gateway_sees_its_own_directories_and_nothing_else_of_the_environment():
    """Like its container in the platform: its /data and /tmp, its program; not the other gateways'
    data and sessions, the environment's secrets or the logs (read through its own root)."""
    name = ready_real_gateway()
    view = Path("/proc/%d/root" % pid(name))
    assert sorted(os.listdir(view / "tmp")) == ["vpn-config.json"] and os.listdir(view / "data") == []
    (data_of(name) / "mine").write_text("x")
    try:
        assert os.listdir(view / "data") == ["mine"], "its /data is its own data directory"
    finally:
        (data_of(name) / "mine").unlink()
    assert (view / "opt/demiurge-gateway/gateway-build.js").is_file()
    for hidden in (GATEWAYS, Path(state_path(ENV, "secrets")), Path(state_path(ENV, "log")), Path(state_path(ENV))):
        assert not (view / str(hidden).lstrip("/")).exists(), "%s is in the gateway's view" % hidden


def test_secrets_stay_on_the_gateway_host(real_gateways):
    """GATEWAY_TOKEN and GATEWAY_HMAC_SECRET: in no pool table, no task output (-vvv), no log others can read."""
    secrets = []
    for name in NAMES:
        env_file = GATEWAYS / name / "secrets.env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        secrets += [line.split("=", 1)[1] for line in env_file.read_text().splitlines() if "=" in line]
    assert len(secrets) == 6
    with db() as conn:
        tables = [row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()]
        dump = "".join(str(conn.execute('SELECT coalesce(string_agg(t::text, \'\n\'), \'\') FROM "%s" t' % table).fetchone()[0])
                       for table in tables)
    output = real_gateways + converge("started", verbose=True)
    for secret in secrets:
        assert secret not in dump, "a gateway secret is in the pool database"
        assert secret not in output, "a gateway secret is in a task's output"
    # The gateway prints its secrets at start: its log must be readable by root alone.
    for name in NAMES:
        log = Path(state_path(ENV, "log", name + ".log"))
        assert not stat.S_IMODE(log.stat().st_mode) & 0o004, "%s is readable by others" % log
