"""Edge routing against the real nginx of the test stack, proxying to real gateway stand-ins."""

import asyncio
import base64
import importlib.util
import multiprocessing
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ansible_collections.demiurge.gateway.plugins.module_utils import _edge_route
from ansible_collections.demiurge.gateway.plugins.module_utils._edge_route import EdgeError, ensure_route
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import InvalidInputError

STANDIN = Path(__file__).resolve().parents[2] / "roles" / "gateway_standin" / "files" / "gateway_standin.py"
_SPEC = importlib.util.spec_from_file_location("gateway_standin", STANDIN)
standin = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(standin)


def run_command(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def edge():
    root = os.environ.get("DEMIURGE_TEST_EDGE_ROOT")
    if not root:
        pytest.skip("DEMIURGE_TEST_EDGE_ROOT is not set: run the suite through scripts/test.sh")
    port = int(os.environ["DEMIURGE_TEST_HTTP_PORT"])
    return {"root": root, "port": port, "url": "http://127.0.0.1:%d" % port, "domain": os.environ["DEMIURGE_TEST_DOMAIN"]}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def gateways(tmp_path_factory):
    """Two running stand-ins: name -> upstream. No platform API answers their ready report, which
    does not stop them from serving."""
    procs, upstreams = [], {}
    for name in ("gw-a", "gw-b"):
        port, root = free_port(), tmp_path_factory.mktemp(name)
        env = dict(os.environ, GATEWAY_ID=name, GATEWAY_TOKEN="t", GATEWAY_HMAC_SECRET="s", GANYMEDE_FQDN="127.0.0.1:1",
                   SERVER_BIND='[{"host": "127.0.0.1", "port": %d}]' % port, GATEWAY_SCRIPTS_DIR=str(root))
        procs.append(subprocess.Popen([sys.executable, str(STANDIN), "--name", name, "--tmp-dir", str(root), "--data-dir",
                                       str(root)], env=env, stdout=subprocess.DEVNULL))
        upstreams[name] = "127.0.0.1:%d" % port
    for upstream in upstreams.values():
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", int(upstream.split(":")[1])), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "stand-in did not start"
                time.sleep(0.05)
    yield upstreams
    for proc in procs:
        proc.terminate()
        proc.wait(5)


def params(edge, org, **overrides):
    base = {"config_root": edge["root"], "config_file": None, "organization": str(org), "domain": edge["domain"],
            "upstream": None, "state": "present", "owner": None, "force": False, "listen_url": edge["url"],
            "nginx_binary": "/usr/sbin/nginx", "reload_timeout": 5.0, "lock_timeout": 30.0, "reach_path": None, "reach_timeout": 5}
    base.update(overrides)
    return base


def route(edge, org, check_mode=False, **overrides):
    warnings = []
    result = ensure_route(params(edge, org, **overrides), check_mode, run_command, warnings.append)
    return dict(result, warnings=warnings)


def get(edge, host, path="/collab/ping"):
    """(status, X-Gateway header) of one request through the edge."""
    with socket.create_connection(("127.0.0.1", edge["port"]), timeout=5) as conn:
        conn.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, host)).encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip() for line in head[1:] if ":" in line}
    return int(head[0].split()[1]), headers.get("x-gateway")


def host_of(edge, org, sub=None):
    return ("%s.org-%s.%s" % (sub, org, edge["domain"])) if sub else "org-%s.%s" % (org, edge["domain"])


def entry(edge, org):
    return _edge_route.Edge(edge["root"], None, run_command).route_entry("org-%s" % org)


def nginx_accepts(edge):
    return run_command(["/usr/sbin/nginx", "-t", "-q", "-p", edge["root"], "-c", edge["root"] + "/nginx.conf"])[0] == 0


def test_route_reaches_the_gateway_for_the_name_and_its_subdomains(edge, gateways):
    org = uuid.uuid4()
    assert get(edge, host_of(edge, org))[0] == 404
    result = route(edge, org, upstream=gateways["gw-a"])
    assert result["changed"]
    assert get(edge, host_of(edge, org)) == (200, "gw-a")
    assert get(edge, host_of(edge, org, "uc-7")) == (200, "gw-a")
    assert get(edge, "org-%s.%s" % (uuid.uuid4(), edge["domain"]))[0] == 404
    assert not route(edge, org, upstream=gateways["gw-a"])["changed"], "second run changes nothing"
    assert route(edge, org, state="absent")["changed"]
    assert get(edge, host_of(edge, org))[0] == 404
    assert not route(edge, org, state="absent")["changed"]


def test_websocket_upgrade_passes_through(edge, gateways):
    org = uuid.uuid4()
    route(edge, org, upstream=gateways["gw-b"])
    try:
        with socket.create_connection(("127.0.0.1", edge["port"]), timeout=5) as conn:
            key = base64.b64encode(os.urandom(16)).decode()
            conn.sendall(("GET /standin/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (host_of(edge, org, "uc-1"), key)).encode())
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(1)
            assert head.startswith(b"HTTP/1.1 101")
            conn.sendall(standin.frame(0x1, b"hello", mask=os.urandom(4)))
            stream = conn.makefile("rb")

            class Reader:  # read_frame wants an awaitable readexactly
                async def readexactly(self, size):
                    return stream.read(size)

            opcode, payload = asyncio.run(standin.read_frame(Reader()))
            assert (opcode, payload) == (0x1, b"gw-b: hello")
    finally:
        route(edge, org, state="absent")


def test_check_mode_writes_nothing(edge, gateways):
    org = uuid.uuid4()
    result = route(edge, org, check_mode=True, upstream=gateways["gw-a"])
    assert result["changed"] and entry(edge, org) is None
    assert get(edge, host_of(edge, org))[0] == 404


def test_rejected_candidate_restores_the_previous_route(edge, gateways, monkeypatch):
    org = uuid.uuid4()
    route(edge, org, upstream=gateways["gw-a"])
    shard = Path(_edge_route.Edge(edge["root"], None, run_command).shard_path("org-%s" % org))
    before = shard.read_text()
    monkeypatch.setattr(_edge_route, "render_entry",
                        lambda label, host, upstream, owner: "# %s\n.%s %s extra junk;\n" % (label, host, upstream))
    with pytest.raises(EdgeError) as caught:
        route(edge, org, upstream=gateways["gw-b"])
    message = str(caught.value)
    assert "nginx rejected the route" in message and "previous routes are back" in message
    assert "%s:" % shard in message, "nginx's message names file and line"
    monkeypatch.undo()
    assert shard.read_text() == before
    assert nginx_accepts(edge)
    assert get(edge, host_of(edge, org)) == (200, "gw-a")
    route(edge, org, state="absent")


def test_rejected_first_route_leaves_no_file(edge, gateways, monkeypatch):
    org = uuid.uuid4()
    monkeypatch.setattr(_edge_route, "render_entry", lambda label, host, upstream, owner: "# %s\nnot a map line\n" % label)
    with pytest.raises(EdgeError):
        route(edge, org, upstream=gateways["gw-a"])
    assert entry(edge, org) is None
    assert nginx_accepts(edge)


def test_foreign_broken_file_is_reported_and_nothing_changes(edge, gateways):
    org, serving = uuid.uuid4(), uuid.uuid4()
    route(edge, serving, upstream=gateways["gw-a"])
    foreign = Path(edge["root"]) / "routes" / "zz-foreign.conf"
    foreign.write_text("this is not nginx;;\n")
    try:
        with pytest.raises(EdgeError, match="already broken before this change.*zz-foreign.conf"):
            route(edge, org, upstream=gateways["gw-b"])
        assert entry(edge, org) is None
        assert get(edge, host_of(edge, serving)) == (200, "gw-a"), "serving is unchanged"
        forced = route(edge, org, upstream=gateways["gw-b"], force=True)
        assert forced["changed"] and "written but not live" in forced["warnings"][0]
        assert get(edge, host_of(edge, org))[0] == 404, "not live while the foreign file breaks nginx"
    finally:
        foreign.unlink()
    assert nginx_accepts(edge)
    route(edge, org, state="absent", force=True)
    route(edge, serving, state="absent")


def test_reload_that_does_not_take_effect_is_rolled_back(edge, gateways, monkeypatch):
    org = uuid.uuid4()
    monkeypatch.setattr(_edge_route.Edge, "reload", lambda self: None)
    with pytest.raises(EdgeError, match="did not serve the new route"):
        route(edge, org, upstream=gateways["gw-a"], reload_timeout=0.3)
    assert entry(edge, org) is None


def test_foreign_owner_is_refused(edge, gateways):
    org = uuid.uuid4()
    route(edge, org, upstream=gateways["gw-a"], owner="alloc-1")
    with pytest.raises(InvalidInputError, match="owned by alloc-1") as caught:
        route(edge, org, upstream=gateways["gw-b"], owner="alloc-2")
    assert caught.value.details["current_owner"] == "alloc-1"
    with pytest.raises(InvalidInputError, match="owned by alloc-1"):
        route(edge, org, state="absent", owner="alloc-2")
    assert get(edge, host_of(edge, org)) == (200, "gw-a")
    route(edge, org, state="absent", owner="alloc-1")


@pytest.mark.parametrize("upstream", ["gateway.local:80", "127.0.0.1", "127.0.0.1:99999", "1.2.3.4:80; evil"])
def test_bad_upstream_is_refused_before_anything_is_written(edge, upstream):
    with pytest.raises(InvalidInputError, match="is not <ip>:<port>"):
        route(edge, uuid.uuid4(), upstream=upstream)


def _route_many(args):
    edge, upstream, orgs = args
    for org in orgs:
        ensure_route(params(edge, org, upstream=upstream), False, run_command, print)


def test_concurrent_changes_from_several_processes_all_land(edge, gateways):
    batches = [[str(uuid.uuid4()) for dummy in range(5)] for dummy in range(6)]
    upstreams = [gateways["gw-a"], gateways["gw-b"]]
    # spawn, not fork: earlier tests leave threads in this process, and a forked child can inherit
    # a lock one of them holds. The timeout turns any hang into a failure.
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        pool.map_async(_route_many, [(edge, upstreams[i % 2], batch) for i, batch in enumerate(batches)]).get(timeout=180)
    try:
        for i, batch in enumerate(batches):
            for org in batch:
                assert get(edge, host_of(edge, org)) == (200, "gw-a" if i % 2 == 0 else "gw-b")
    finally:
        for batch in batches:
            for org in batch:
                route(edge, org, state="absent")
