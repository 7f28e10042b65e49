"""The platform on real hosts: two edges, two gateway hosts and a storage host, each a lab host (its
own network namespace, sshd and private file system) reached only over SSH, with the pool and DNS on
a local stack of their own (environment <test env>-hosts). What an operator runs: the lab's
inventory directory, playbook platform_hosts, then allocate, release and reconcile.

Every check of a host's files goes through Ansible's connection to that host, as the collection's
own must: the machine cannot see a host's private area, so a module that read it directly would
find nothing and these tests would fail. After each life-cycle test, lab_violations() checks the
life cycle's promises on the hosts.
"""

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
from contextlib import contextmanager
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest

from ansible_collections.demiurge.gateway.plugins.module_utils._paths import state_path
from ansible_collections.demiurge.gateway.plugins.module_utils._pdns_client import PdnsClient
from ansible_collections.demiurge.gateway.plugins.module_utils._pdns_rrset import list_organizations

from lifecycle import ENV, REPO, ansible_playbook, eventually, kill_tree, plain, runner_env

LAB_ENV = "%s-hosts" % ENV if ENV else None
PORT_BASE = 16600  # clear of the test stack (16000) and molecule (17xxx): edges +80/+443, gateways +501 up
LAB_DIR = Path("/run/demiurge-lab") / LAB_ENV if LAB_ENV else None
INVENTORY = str(LAB_DIR / "inventory") if LAB_DIR else None
NET = "10.231.%d" % ((PORT_BASE // 100) % 256)
ADDRESS = {"edge1": NET + ".11", "edge2": NET + ".12", "gwhost1": NET + ".13", "gwhost2": NET + ".14", "storage1": NET + ".15"}
EDGES = ["edge1", "edge2"]
GATEWAY_HOSTS = ["gwhost1", "gwhost2"]
HTTP_PORT = PORT_BASE + 80
ZONE = "%s.demiurge.test" % LAB_ENV

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root"), pytest.mark.real_hosts]


def lab_env(fault=False, **extra):
    # A fault test opens a connection per task: a persistent one, opened earlier, would hide the fault.
    env = runner_env(DEMIURGE_ENV=LAB_ENV, DEMIURGE_PORT_BASE=str(PORT_BASE), ANSIBLE_TIMEOUT="3",
                     ANSIBLE_FORCE_COLOR="0", **extra)
    if fault:
        env["ANSIBLE_SSH_ARGS"] = "-o ControlMaster=no"
    return env


def playbook(name, *args, inventory=True, fault=False, on_task=None, kill_at=None, timeout=600):
    """(rc, plain output) of ansible-playbook demiurge.gateway.<name>; on_task=(task name, action)
    runs action() once when that task starts; kill_at=task name kills the run's whole tree then
    (the output says whether it got there)."""
    argv = [ansible_playbook(), "demiurge.gateway.%s" % name] + (["-i", INVENTORY] if inventory else []) + list(args)
    proc = subprocess.Popen(argv, cwd=REPO, env=lab_env(fault), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, fired = [], False
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            lines.append(line)
            if on_task and not fired and line.startswith("TASK [") and on_task[0] in line:
                on_task[1]()
                fired = True
            if kill_at and not fired and line.startswith("TASK [") and kill_at in line:
                kill_tree(proc.pid)
                lines.append("KILLED at %s\n" % kill_at)
                fired = True
        proc.wait()
    finally:
        timer.cancel()
    return proc.returncode, plain("".join(lines))


def changed(out, host):
    return int(re.search(r"%s\s*:\s*ok=\d+\s+changed=(\d+)" % re.escape(host), out).group(1))


def on_host(host, module, args, fault=False):
    """The result of one module run on a lab host, through the lab's inventory: the module's JSON,
    or for a command {"rc": ..., "stdout": ...}."""
    proc = subprocess.run([str(Path(ansible_playbook()).with_name("ansible")), "-i", INVENTORY, host, "-m", module, "-a", args],
                          cwd=REPO, env=lab_env(fault, ANSIBLE_STDOUT_CALLBACK="minimal", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
                                                ANSIBLE_CALLBACK_RESULT_FORMAT="json"),
                          capture_output=True, text=True, check=False, timeout=120)
    # Ansible's own error lines, when the module failed, come before the host's result.
    start = proc.stdout.find("%s | " % host)
    head, dummy, rest = proc.stdout[max(start, 0):].partition("\n")
    command = re.match(r"^%s \| \S+ \| rc=(\d+) >>$" % re.escape(host), head)
    if command:
        return {"rc": int(command.group(1)), "stdout": rest.rstrip("\n")}
    assert head.startswith("%s | " % host) and head.endswith("=> {"), proc.stdout + proc.stderr
    return json.loads(rest and "{" + rest)


def sh(host, command):
    result = on_host(host, "ansible.builtin.shell", command)
    assert result.get("rc") == 0, result
    return result["stdout"]


def pool():
    password = Path(state_path(LAB_ENV, "secrets", "pool_db_password")).read_text().strip()
    return psycopg.connect(host="127.0.0.1", port=PORT_BASE + 432, user="demiurge", password=password,
                           dbname="demiurge", autocommit=True)


def gateways():
    with pool() as conn:
        rows = conn.execute("SELECT name, status, api_url, nginx_upstream, metadata FROM gateways ORDER BY name").fetchall()
    return {row[0]: dict(zip(("name", "status", "api_url", "upstream", "metadata"), row)) for row in rows}


def live():
    with pool() as conn:
        rows = conn.execute("SELECT a.organization_id, a.id, a.status, g.name FROM organizations_gateways a "
                            "JOIN gateways g ON g.id = a.gateway_id WHERE a.stopped_at IS NULL").fetchall()
    return {str(row[0]): {"allocation_id": str(row[1]), "status": row[2], "gateway": row[3]} for row in rows}


def http(edge, organization, path="/collab/ping"):
    """(status, headers, body) of a request for the organization's name through one edge."""
    request = urllib.request.Request("http://%s:%d%s" % (ADDRESS[edge], HTTP_PORT, path),
                                     headers={"Host": "org-%s.%s" % (organization, ZONE)})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def dig(organization):
    out = subprocess.run(["dig", "+short", "-p", str(PORT_BASE + 353), "@127.0.0.1", "org-%s.%s" % (organization, ZONE), "A"],
                         capture_output=True, text=True, check=True).stdout
    return sorted(out.split())


def standin_state(api_url):
    try:
        with urllib.request.urlopen(api_url + "/standin/state", timeout=3) as response:
            return json.loads(response.read())
    except OSError:
        return None


def data_files():
    """{gateway name: [files in its data directory]}, read on each gateway host over SSH."""
    found = {}
    for host in GATEWAY_HOSTS:
        root = state_path(LAB_ENV, "gateways")
        for line in sh(host, "cd %s && find . -path './*/data/*' -type f" % root).split():
            name = line.split("/")[1]
            found.setdefault(name, []).append(line)
    return found


def lab_violations():
    """The life cycle's promises, on the hosts: no organization's data or session on a gateway not
    allocated to it, nor in transit in a host's temporary directory; nothing left allocating,
    releasing or resetting; DNS (listed and asked over the wire) and the routes on every edge equal
    to the live allocations."""
    found, pool_gateways, allocations = [], gateways(), live()
    by_gateway = {entry["gateway"]: organization for organization, entry in allocations.items()}
    files = data_files()
    for name, gateway in pool_gateways.items():
        holds = (standin_state(gateway["api_url"]) or {}).get("organization")
        if name not in by_gateway and (files.get(name) or holds):
            found.append("gateway %s (%s, no allocation) holds files %s / serves %s" % (name, gateway["status"], files.get(name), holds))
        if name in by_gateway and holds and holds != by_gateway[name]:
            found.append("gateway %s serves %s, allocated to %s" % (name, holds, by_gateway[name]))
        if gateway["status"] not in ("ready", "allocated"):
            found.append("gateway %s is %s" % (name, gateway["status"]))
    found += ["allocation of %s is %s" % (org, entry["status"]) for org, entry in allocations.items() if entry["status"] != "active"]
    for host in GATEWAY_HOSTS + ["storage1"]:
        left = sh(host, "find /tmp -name 'demiurge-bundle-*'")
        if left:
            found.append("%s keeps bundles in transit: %s" % (host, left.split()))
    key = Path(state_path(LAB_ENV, "secrets", "pdns_api_key")).read_text().strip()
    records = {entry["organization"]: entry["owner"]
               for entry in list_organizations(PdnsClient("http://127.0.0.1:%d" % (PORT_BASE + 81), key), ZONE + ".")}
    wanted = {org: entry["allocation_id"] for org, entry in allocations.items()}
    if records != wanted:
        found.append("DNS owners %s, live allocations %s" % (records, wanted))
    for organization in wanted:
        if dig(organization) != sorted(ADDRESS[edge] for edge in EDGES):
            found.append("org-%s resolves to %s, not to every edge" % (organization, dig(organization)))
    for edge in EDGES:
        result = on_host(edge, "demiurge.gateway.edge_route_info", "config_root=%s" % state_path(LAB_ENV, "nginx"))
        routes = {route["organization"]: route for route in result["routes"]}
        for organization, entry in allocations.items():
            route = routes.pop(organization, None)
            upstream = pool_gateways[entry["gateway"]]["upstream"]
            if route is None or (route["owner"], route["upstream"]) != (entry["allocation_id"], upstream):
                found.append("%s routes %s as %s, not %s to %s" % (edge, organization, route, entry["allocation_id"], upstream))
        found += ["%s routes %s without a live allocation" % (edge, organization) for organization in routes]
    return found


@pytest.fixture(scope="module")
def platform():
    """The stack of the lab's environment, the lab and the platform's services on its hosts; all
    removed afterwards (removing a lab host ends every process in it)."""
    try:
        rc, out = playbook("local_stack", "-e", "local_stack_gateways=0", inventory=False)
        assert rc == 0, out[-3000:]
        rc, out = playbook("lab_hosts", inventory=False)
        assert rc == 0, out[-3000:]
        rc, out = playbook("platform_hosts")
        assert rc == 0, out[-3000:]
        yield out
    finally:
        playbook("lab_hosts", "-e", "lab_hosts_state=absent", inventory=False)
        playbook("local_stack", "-e", "local_stack_state=absent", inventory=False)


@pytest.fixture
def settled(platform):
    """After the test: reconcile until a run changes nothing (at most twice: a run that repaired
    something is followed by one that must find nothing), then the promises hold."""
    yield
    for attempt in (1, 2):
        # Bundles a killed run left in transit are swept at once, not after the usual ten minutes.
        rc, out = playbook("reconcile", "-e", "allocation_lease_seconds=1", "-e", "allocation_transit_max_age=0")
        assert rc == 0, out[-3000:]
        if changed(out, "localhost") == 0:
            break
    else:
        raise AssertionError("the second reconcile still changed something:\n" + out[-3000:])
    violations = lab_violations()
    assert not violations, "life-cycle promises broken on the hosts:\n" + "\n".join(violations)


def new_org():
    return str(uuid.uuid4())


def write_data(gateway, size=3000000):
    """Organization data on the gateway's own host: a Yjs document and the state file with tokens;
    returns {relative path: sha256}."""
    host = gateways()[gateway]["metadata"]["host"]
    root = "%s/%s/data" % (state_path(LAB_ENV, "gateways"), gateway)
    out = sh(host, "set -e; mkdir -p {0}/projects/p-1; head -c {1} /dev/urandom > {0}/projects/p-1/doc.yjs; "
                   "echo '{{\"tokens\": {{\"t1\": \"secret-{2}\"}}}}' > {0}/state.json; "
                   "cd {0} && find . -type f -exec sha256sum {{}} +".format(root, size, uuid.uuid4().hex))
    return dict(reversed(line.split()) for line in out.splitlines())


def allocated_org(size=3000000):
    """A newly allocated organization with data on its gateway: (organization, gateway, written)."""
    organization = new_org()
    rc, out = playbook("allocate", "-e", "organization_id=%s" % organization)
    assert rc == 0, out[-3000:]
    gateway = live()[organization]["gateway"]
    return organization, gateway, write_data(gateway, size=size)


def read_data(gateway):
    host = gateways()[gateway]["metadata"]["host"]
    root = "%s/%s/data" % (state_path(LAB_ENV, "gateways"), gateway)
    out = sh(host, "cd %s && find . -type f -exec sha256sum {} +" % root)
    return dict(reversed(line.split()) for line in out.splitlines())


@contextmanager
def hung(host):
    """The host's sshd stopped (SIGSTOP) meanwhile: new connections to the host time out."""
    pid = int(Path(state_path(LAB_ENV, "run", "lab-%s-sshd.pid" % host)).read_text().split()[0])
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@contextmanager
def full_disk(host):
    """The host's storage area (its private tmpfs) filled to the last byte meanwhile."""
    filler = state_path(LAB_ENV, "filler")
    on_host(host, "ansible.builtin.shell", "mkdir -p %s && dd if=/dev/zero of=%s bs=1M status=none"
            % (os.path.dirname(filler), filler))
    try:
        assert int(sh(host, "df -B1 --output=avail %s | tail -1" % os.path.dirname(filler))) < 65536
        yield
    finally:
        sh(host, "rm -f %s" % filler)


def quarantine_host(host, quarantined):
    """Keep the claim off one gateway host's ready gateways (or give them back)."""
    with pool() as conn:
        if quarantined:
            conn.execute("UPDATE gateways SET status = 'quarantined' WHERE status = 'ready' AND metadata->>'host' = %s", (host,))
        else:
            conn.execute("UPDATE gateways SET status = 'ready' WHERE status = 'quarantined' AND metadata->>'host' = %s", (host,))


def test_the_platform_converges_on_its_hosts_and_again_changes_nothing(platform):
    rc, out = playbook("platform_hosts", "--check", "--diff")
    assert rc == 0 and all(changed(out, host) == 0 for host in EDGES + GATEWAY_HOSTS + ["localhost"]), out[-3000:]
    rc, out = playbook("platform_hosts")
    assert rc == 0 and all(changed(out, host) == 0 for host in EDGES + GATEWAY_HOSTS + ["localhost"]), out[-3000:]


def test_gateways_run_on_their_hosts_and_are_registered_with_them(platform):
    pool_gateways = gateways()
    assert sorted(g["metadata"]["host"] for g in pool_gateways.values()) == ["gwhost1", "gwhost1", "gwhost2", "gwhost2"]
    for gateway in pool_gateways.values():
        host = gateway["metadata"]["host"]
        assert gateway["api_url"].startswith("http://%s:" % ADDRESS[host]) and gateway["status"] == "ready"
        with urllib.request.urlopen(gateway["api_url"] + "/collab/ping", timeout=3) as response:
            assert response.status == 200
        # Its data directory exists on its host only.
        assert sh(host, "test -d %s && echo yes" % gateway["metadata"]["data_dir"]) == "yes"
        assert not os.path.exists(gateway["metadata"]["data_dir"])


def test_full_cycle_data_follows_the_org_from_one_gateway_host_to_the_other(settled):
    organization = new_org()
    rc, out = playbook("allocate", "-e", "organization_id=%s" % organization)
    assert rc == 0, out[-3000:]
    first = live()[organization]["gateway"]
    assert dig(organization) == sorted(ADDRESS[edge] for edge in EDGES)
    for edge in EDGES:
        status, headers, body = http(edge, organization)
        assert status == 200 and headers["X-Gateway"] == first, (edge, status, headers, body)
    written = write_data(first)
    first_host = gateways()[first]["metadata"]["host"]

    rc, out = playbook("release", "-e", "organization_id=%s" % organization)
    assert rc == 0, out[-3000:]
    assert "storage1" in out and first_host in out
    assert read_data(first) == {}, "the released gateway still holds data"
    assert (standin_state(gateways()[first]["api_url"]) or {}).get("organization") is None
    assert all(http(edge, organization)[0] == 404 for edge in EDGES) and dig(organization) == []
    # The snapshot is on the storage host, and only there.
    stored = sh("storage1", "find %s/%s -name manifest.json" % (state_path(LAB_ENV, "org-data"), organization))
    assert stored.count("manifest.json") == 1
    assert not os.path.exists(os.path.join(state_path(LAB_ENV, "org-data"), organization))

    other_host = [host for host in GATEWAY_HOSTS if host != first_host][0]
    quarantine_host(first_host, True)
    try:
        rc, out = playbook("allocate", "-e", "organization_id=%s" % organization)
    finally:
        quarantine_host(first_host, False)
    assert rc == 0, out[-3000:]
    second = live()[organization]["gateway"]
    assert gateways()[second]["metadata"]["host"] == other_host
    assert read_data(second) == written, "the data did not arrive byte for byte on the other host"
    state = standin_state(gateways()[second]["api_url"])
    assert state["organization"] == organization and "secret-" in state["state"]["state_file"]

    rc, out = playbook("release", "-e", "organization_id=%s" % organization)
    assert rc == 0, out[-3000:]


def test_an_edge_unreachable_during_the_route_step_fails_the_allocation_and_reconcile_finishes(settled):
    organization = new_org()
    with hung("edge2"):
        rc, out = playbook("allocate", "-e", "organization_id=%s" % organization, fault=True)
    assert rc != 0
    assert "Host edge2 did not answer on its connection" in out and "rollback did not finish" in out, out[-3000:]
    assert "run reconcile.yml" in out
    # Never served while an edge lacks the route: the other edge and DNS were undone at once.
    assert http("edge1", organization)[0] == 404 and dig(organization) == []


def test_the_storage_host_unreachable_during_release_stops_it_with_nothing_lost(settled):
    organization, gateway, written = allocated_org()
    with hung("storage1"):
        rc, out = playbook("release", "-e", "organization_id=%s" % organization, fault=True)
    assert rc != 0 and "storage1" in out and "Nothing was withdrawn" in out, out[-3000:]
    assert live()[organization]["gateway"] == gateway and read_data(gateway) == written
    assert all(http(edge, organization)[0] == 200 for edge in EDGES)
    rc, out = playbook("release", "-e", "organization_id=%s" % organization)
    assert rc == 0, out[-3000:]
    _assert_stored(organization, written)


def _assert_stored(organization, written):
    root = "%s/%s" % (state_path(LAB_ENV, "org-data"), organization)
    out = sh("storage1", "cd %s/$(ls %s | sort | tail -1)/files && find . -type f -exec sha256sum {} +" % (root, root))
    assert dict(reversed(line.split()) for line in out.splitlines()) == written


def test_a_full_storage_host_stops_the_release_with_nothing_lost(settled):
    organization, gateway, written = allocated_org(size=8000000)
    with full_disk("storage1"):
        rc, out = playbook("release", "-e", "organization_id=%s" % organization)
    assert rc != 0 and "full" in out and "Nothing was withdrawn" in out, out[-3000:]
    assert read_data(gateway) == written
    rc, out = playbook("release", "-e", "organization_id=%s" % organization)
    assert rc == 0, out[-3000:]
    _assert_stored(organization, written)


def test_the_storage_host_unreachable_during_restore_rolls_the_allocation_back(settled):
    organization, written = stored_org()
    with hung("storage1"):
        rc, out = playbook("allocate", "-e", "organization_id=%s" % organization, fault=True)
    assert rc != 0 and "step 'restore' on storage1" in out and "was rolled back" in out, out[-3000:]
    assert organization not in live()
    _assert_stored(organization, written)


def test_a_gateway_host_unreachable_during_the_handshake_is_repaired_by_reconcile(settled):
    organization = new_org()
    veth = {}

    def link(state):
        subprocess.run(["ip", "link", "set", veth["name"], state], check=True)

    def cut_the_gateways_host():
        # The claim is done: find the gateway's host and take its link down.
        host = gateways()[live()[organization]["gateway"]]["metadata"]["host"]
        veth["name"] = "dglab%d-%s" % ((PORT_BASE // 100) % 256, ADDRESS[host].rsplit(".", 1)[1])
        link("down")

    try:
        rc, out = playbook("allocate", "-e", "organization_id=%s" % organization, "-e", "allocation_gateway_timeout=2",
                           fault=True, on_task=("Hand the gateway to the organization", cut_the_gateways_host))
    finally:
        if veth:
            link("up")
    assert veth and rc != 0, out[-3000:]
    assert "step 'handshake'" in out and "rollback did not finish" in out and "did not answer on its connection" in out, out[-3000:]
    assert http("edge1", organization)[0] == 404 and dig(organization) == []


def test_a_long_edge_outage_serves_from_the_other_edge_and_the_edge_is_rebuilt_when_back(settled):
    """The documented policy: while an edge is down, allocations fail; to keep allocating, the
    operator takes the edge out of the inventory (here, as the role's inputs), and puts it back when
    it returns, after which reconcile routes every active organization on it again."""
    before, during = new_org(), new_org()
    rc, out = playbook("allocate", "-e", "organization_id=%s" % before)
    assert rc == 0, out[-3000:]
    without_edge2 = ["-e", json.dumps({"allocation_edge_hosts": ["edge1"], "allocation_edge_addresses": [ADDRESS["edge1"]]})]
    with hung("edge2"):
        rc, out = playbook("reconcile", *without_edge2, fault=True)
        assert rc == 0 and dig(before) == [ADDRESS["edge1"]], out[-3000:]
        rc, out = playbook("allocate", "-e", "organization_id=%s" % during, *without_edge2, fault=True)
        assert rc == 0, out[-3000:]
        assert dig(during) == [ADDRESS["edge1"]] and http("edge1", during)[0] == 200
    # Rebuilt while it was away: the edge comes back serving no route at all.
    sh("edge2", "rm -f %s/orgs-*.conf && kill -HUP $(head -1 %s)"
       % (state_path(LAB_ENV, "nginx", "routes"), state_path(LAB_ENV, "run", "edge-nginx.pid")))
    # A reload is asynchronous: the old workers answer until they have finished.
    eventually("edge2 reloaded without routes", lambda: http("edge2", before)[0] == 404, timeout=15)
    rc, out = playbook("reconcile")
    assert rc == 0, out[-3000:]
    for organization in (before, during):
        assert dig(organization) == sorted(ADDRESS[edge] for edge in EDGES)
        assert http("edge2", organization)[0] == 200
    for organization in (before, during):
        rc, out = playbook("release", "-e", "organization_id=%s" % organization)
        assert rc == 0, out[-3000:]


def test_data_sync_stores_each_changed_organization_from_its_host_and_sends_nothing_unchanged(settled):
    organizations = [new_org(), new_org()]
    written = {}
    for organization in organizations:
        rc, out = playbook("allocate", "-e", "organization_id=%s" % organization)
        assert rc == 0, out[-3000:]
        written[organization] = write_data(live()[organization]["gateway"], size=500000)
    assert {gateways()[live()[org]["gateway"]]["metadata"]["host"] for org in organizations} == set(GATEWAY_HOSTS)
    rc, out = playbook("data_sync")
    assert rc == 0, out[-3000:]
    for organization in organizations:
        _assert_stored(organization, written[organization])
    # Nothing changed: no bundle is made, so nothing is sent or stored.
    rc, out = playbook("data_sync")
    assert rc == 0 and changed(out, "localhost") == 0, out[-3000:]
    assert "Keep the bundled snapshots in central storage" in out and "skipping" in out
    for organization in organizations:
        rc, out = playbook("release", "-e", "organization_id=%s" % organization)
        assert rc == 0, out[-3000:]


# Where a release between hosts can die: between its two data tasks (a bundle in transit), after the
# data is stored and the names are gone, and after the gateway was wiped.
RELEASE_TASKS = ["Keep the gateway's snapshot", "Remove the routes from every edge", "End the allocation"]


@pytest.mark.kill_matrix
@pytest.mark.parametrize("task", RELEASE_TASKS)
def test_a_release_killed_between_hosts_is_finished_by_reconcile_with_the_data_in_storage(settled, task):
    organization, dummy, written = allocated_org(size=2000000)
    rc, out = playbook("release", "-e", "organization_id=%s" % organization, "-e", "allocation_lease_seconds=2", kill_at=task)
    assert "KILLED at" in out, "the release ended before %r: %s" % (task, out[-3000:])
    wait_lease_lapsed(organization)
    rc, out = playbook("reconcile")
    assert rc == 0, out[-3000:]
    assert organization not in live()
    _assert_stored(organization, written)


def wait_lease_lapsed(organization):
    """A killed run's lease lapses before reconcile may repair it."""
    deadline = time.monotonic() + 30
    with pool() as conn:
        while conn.execute("SELECT count(*) FROM organizations_gateways WHERE organization_id = %s AND stopped_at IS NULL "
                           "AND lease_expires_at >= now()", (organization,)).fetchone()[0]:
            assert time.monotonic() < deadline, "the killed run's lease is still live after 30 s"
            time.sleep(0.2)


def stored_org(size=1000000):
    """An organization released with data in central storage: (organization, written files)."""
    organization, dummy, written = allocated_org(size=size)
    rc, out = playbook("release", "-e", "organization_id=%s" % organization)
    assert rc == 0, out[-3000:]
    return organization, written


# Where an allocation between hosts can die with the data on its way: before the storage host
# bundles it, with the bundle in transit, and restored on the gateway's host but not handed over.
# The local kill matrix kills every task; a run dead with its route on one edge of two is in
# test_two_edges, and an edge that stops answering mid-step is below.
ALLOCATE_TASKS = ["Bundle the organization's newest snapshot on the storage host",
                  "Restore the organization's data into the gateway", "Hand the gateway to the organization"]


@pytest.mark.kill_matrix
@pytest.mark.parametrize("task", ALLOCATE_TASKS)
def test_an_allocation_killed_between_hosts_is_repaired_by_reconcile(settled, task):
    organization, written = stored_org()
    rc, out = playbook("allocate", "-e", "organization_id=%s" % organization, "-e", "allocation_lease_seconds=2", kill_at=task)
    assert "KILLED at" in out, "the allocation ended before %r: %s" % (task, out[-3000:])
    wait_lease_lapsed(organization)
    rc, out = playbook("reconcile")
    assert rc == 0, out[-3000:]
    # Rolled back or rolled forward, never half: and the data is where it belongs either way.
    if organization in live():
        entry = live()[organization]
        assert entry["status"] == "active" and read_data(entry["gateway"]) == written
        assert all(http(edge, organization)[0] == 200 for edge in EDGES)
        rc, out = playbook("release", "-e", "organization_id=%s" % organization)
        assert rc == 0, out[-3000:]
    _assert_stored(organization, written)


@contextmanager
def failing_handshakes():
    """Every gateway on the gateway hosts refuses the handshake meanwhile."""
    flags = {host: " ".join("%s/%s/fail-handshake" % (state_path(LAB_ENV, "gateways"), name)
                            for name, gateway in gateways().items() if gateway["metadata"]["host"] == host)
             for host in GATEWAY_HOSTS}
    for host, files in flags.items():
        sh(host, "for flag in %s; do echo injected > $flag; done" % files)
    try:
        yield
    finally:
        for host, files in flags.items():
            sh(host, "rm -f %s" % files)


# Where a rollback between hosts can die: with routes still on the remote edges, and with the
# remote gateway being wiped.
ROLLBACK_TASKS = ["Remove the routes from every edge", "Recycle the gateway"]


@pytest.mark.kill_matrix
@pytest.mark.parametrize("task", ROLLBACK_TASKS)
def test_a_rollback_killed_between_hosts_is_finished_by_reconcile(settled, task):
    organization, written = stored_org()
    with failing_handshakes():
        rc, out = playbook("allocate", "-e", "organization_id=%s" % organization, "-e", "allocation_lease_seconds=2",
                           kill_at=task)
    assert "KILLED at" in out and "Hand the gateway to the organization" in out, out[-3000:]
    wait_lease_lapsed(organization)
    rc, out = playbook("reconcile")
    assert rc == 0, out[-3000:]
    assert organization not in live() and dig(organization) == []
    assert all(http(edge, organization)[0] == 404 for edge in EDGES)
    _assert_stored(organization, written)


def test_an_edge_unreachable_during_release_stops_it_and_reconcile_finishes(settled):
    organization, dummy, written = allocated_org()
    with hung("edge2"):
        rc, out = playbook("release", "-e", "organization_id=%s" % organization, "-e", "allocation_lease_seconds=2",
                           fault=True)
    assert rc != 0 and "Host edge2 did not answer on its connection" in out, out[-3000:]
    # The data was kept before any name went; the run stays journaled until reconcile ends it.
    _assert_stored(organization, written)
    wait_lease_lapsed(organization)
    rc, out = playbook("reconcile")
    assert rc == 0, out[-3000:]
    assert organization not in live() and dig(organization) == []
    assert all(http(edge, organization)[0] == 404 for edge in EDGES)


def test_a_full_storage_host_still_restores_reading_needs_no_space_there(settled):
    """The bundle a restore reads is made in the storage host's temporary directory, not in its
    full storage area: an allocation goes on, and the stored snapshot is untouched."""
    organization, written = stored_org()
    with full_disk("storage1"):
        rc, out = playbook("allocate", "-e", "organization_id=%s" % organization)
    assert rc == 0 and read_data(live()[organization]["gateway"]) == written, out[-3000:]
    _assert_stored(organization, written)
    rc, out = playbook("release", "-e", "organization_id=%s" % organization)
    assert rc == 0, out[-3000:]


def test_parallel_allocations_between_hosts_each_get_their_own_gateway(settled):
    """More organizations than ready gateways, all at once: each gateway goes to one organization,
    served on both edges, and the rest are refused having changed nothing."""
    ready = sum(1 for gateway in gateways().values() if gateway["status"] == "ready")
    organizations = [new_org() for dummy in range(ready + 4)]
    results = {}

    def one(organization, name):
        results[organization] = playbook(name, "-e", "organization_id=%s" % organization)

    def all_at_once(name, chosen):
        threads = [threading.Thread(target=one, args=(organization, name)) for organization in chosen]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(600)

    all_at_once("allocate", organizations)
    winners = [organization for organization in organizations if results[organization][0] == 0]
    try:
        refused = [out for organization, (rc, out) in results.items() if rc != 0]
        assert len(winners) == ready and all("Pool exhausted" in out and "changed nothing" in out for out in refused), \
            "\n\n".join(out[-2000:] for out in refused)
        held = {live()[organization]["gateway"] for organization in winners}
        assert len(held) == ready
        for organization in winners:
            assert dig(organization) == sorted(ADDRESS[edge] for edge in EDGES)
            assert {http(edge, organization)[1]["X-Gateway"] for edge in EDGES} == {live()[organization]["gateway"]}
        for organization in organizations:
            if organization not in winners:
                assert dig(organization) == [] and http("edge1", organization)[0] == 404
    finally:
        all_at_once("release", winners)
    assert all(results[organization][0] == 0 for organization in winners), [results[o][1][-2000:] for o in winners]


def test_reconcile_sweeps_bundles_left_in_transit_and_passes_over_a_host_that_does_not_answer(settled):
    # What a run killed in the middle of a move leaves: a bundle in a host's temporary directory.
    sh("gwhost1", "mkdir -p /tmp/.ansible && head -c 100000 /dev/urandom > /tmp/.ansible/demiurge-bundle-left.tar")
    with hung("gwhost2"):
        rc, out = playbook("reconcile", "-e", "allocation_transit_max_age=0", fault=True)
    assert rc == 0, out[-3000:]
    assert sh("gwhost1", "ls /tmp/.ansible | grep -c demiurge-bundle || true") == "0"
