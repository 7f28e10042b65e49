"""Two edge hosts in the inventory: every edge gets the route and its own journal record, and a
route that fails on the second edge is rolled back on the first."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import invariants
import lifecycle
from invariants import db
from lifecycle import DOMAIN, ENV, live, run, runner_env

from ansible_collections.demiurge.gateway.plugins.module_utils._paths import state_path

pytestmark = pytest.mark.usefixtures("invariants_hold")

SECOND_ENV = "%s-edge2" % ENV


@pytest.fixture(scope="module")
def second_edge(tmp_path_factory):
    """A second nginx edge, set up by the collection's own edge role, as host edge-2 in `edges`."""
    port = int(os.environ["DEMIURGE_TEST_PORT_BASE"]) + 180
    work = tmp_path_factory.mktemp("edge2")
    (work / "edge.yml").write_text(
        "- hosts: localhost\n  gather_facts: false\n  roles:\n    - role: demiurge.gateway.edge\n"
        "      vars: {edge_env_name: %s, edge_state: \"{{ state }}\", edge_http_port: %d, edge_https_port: 0,\n"
        "             edge_domain: %s, edge_service_manager: process}\n" % (SECOND_ENV, port, DOMAIN))
    (work / "edges.yml").write_text(
        "edges:\n  hosts:\n    edge-2:\n      ansible_connection: local\n      ansible_python_interpreter: %s\n"
        "      demiurge_edge_config_root: %s\n      demiurge_edge_listen_url: http://127.0.0.1:%d\n"
        % (sys.executable, state_path(SECOND_ENV, "nginx"), port))
    edge = [lifecycle.ansible_playbook(), "-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=%s" % sys.executable,
            str(work / "edge.yml")]
    env = dict(os.environ, **runner_env())
    subprocess.run(edge + ["-e", "state=started"], check=True, env=env, capture_output=True, timeout=300)
    lifecycle.INVENTORY.append(str(work / "edges.yml"))
    invariants.EDGE_ROOTS.append(state_path(SECOND_ENV, "nginx"))
    # A new edge gets the routes of the organizations already active from reconcile.yml.
    rc, dummy, out = run("reconcile")
    assert rc == 0, out[-3000:]
    yield {"port": port, "routes": Path(state_path(SECOND_ENV, "nginx", "routes"))}
    lifecycle.INVENTORY.remove(str(work / "edges.yml"))
    invariants.EDGE_ROOTS.remove(state_path(SECOND_ENV, "nginx"))
    subprocess.run(edge + ["-e", "state=absent"], check=True, env=env, capture_output=True, timeout=300)


def through(port, organization):
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: org-%s.%s" % (organization, DOMAIN),
                          "http://127.0.0.1:%d/collab/ping" % port], capture_output=True, text=True, check=False).stdout
    return int(out)


def journal(organization):
    with db() as conn:
        return sorted(conn.execute("SELECT s.step, s.host, s.state FROM allocation_steps s JOIN organizations_gateways og "
                                   "ON og.id = s.allocation_id WHERE og.organization_id = %s AND s.step = 'route'",
                                   (str(organization),)).fetchall())


def test_every_edge_gets_the_route_and_its_own_record(second_edge):
    organization = uuid.uuid4()
    rc, dummy, out = run("allocate", organization)
    assert rc == 0, out[-3000:]
    first = int(os.environ["DEMIURGE_TEST_HTTP_PORT"])
    assert through(first, organization) == 200 and through(second_edge["port"], organization) == 200
    assert journal(organization) == [("route", "edge-2", "done"), ("route", "localhost", "done")]
    assert run("release", organization)[0] == 0
    assert through(first, organization) == 404 and through(second_edge["port"], organization) == 404


def test_a_route_failing_on_the_second_edge_is_rolled_back_on_the_first(second_edge):
    organization = uuid.uuid4()
    foreign = second_edge["routes"] / "zz-foreign.conf"
    foreign.write_text("broken;;\n")
    try:
        rc, dummy, out = run("allocate", organization)
    finally:
        foreign.unlink()
    assert rc != 0 and "was rolled back" in out and "step 'route' on edge-2" in out and "already broken" in out, out[-3000:]
    assert "One or more items failed" not in out.split("Report the failure")[-1]
    assert live(organization) is None
    assert through(int(os.environ["DEMIURGE_TEST_HTTP_PORT"]), organization) == 404, "the first edge's route is gone"


@pytest.mark.parametrize("edge2_route, rolled_forward", [("done", True), ("unknown", False), ("started", False)])
def test_reconcile_rolls_forward_only_when_every_edge_has_the_route(second_edge, edge2_route, rolled_forward):
    """A run that died before activation: rolled forward when the journal shows every step done on
    every edge, rolled back when the route on one edge is in doubt."""
    organization = uuid.uuid4()
    assert run("allocate", organization)[0] == 0
    lifecycle.dead_run(organization)
    with db() as conn:
        conn.execute("UPDATE allocation_steps SET state = %s FROM organizations_gateways og WHERE og.id = allocation_id "
                     "AND og.organization_id = %s AND step = 'route' AND host = 'edge-2'", (edge2_route, str(organization)))
    rc, dummy, out = run("reconcile")
    assert rc == 0, out[-3000:]
    if rolled_forward:
        assert live(organization)[2] == "active" and through(second_edge["port"], organization) == 200
        assert run("release", organization)[0] == 0
    assert live(organization) is None
    assert through(second_edge["port"], organization) == 404
