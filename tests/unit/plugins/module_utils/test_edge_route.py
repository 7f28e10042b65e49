"""edge_route's logic on real files, with nginx -t and the reload scripted."""

import fcntl
import json
import multiprocessing
import os
import time

import pytest

from ansible_collections.demiurge.gateway.plugins.module_utils import _edge_route
from ansible_collections.demiurge.gateway.plugins.module_utils._edge_route import (
    EdgeError,
    entry_owner,
    ensure_route,
    list_routes,
    parse_shard,
    parse_upstream,
    render_entry,
    render_shard,
    unmanaged_lines,
)
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import InvalidInputError
from ansible_collections.demiurge.gateway.plugins.module_utils._module import Call

ORG = "0b5e9b7c-1a2b-4c3d-8e9f-001122334455"
LABEL = "org-" + ORG


class Nginx:
    """nginx -t answers from `verdicts` (None: accepted), one per call; reloads are counted, and
    the live configuration 'serves' whatever the shard held at the last reload."""

    def __init__(self, root, verdicts):
        self.root, self.verdicts, self.tests, self.reloads = root, list(verdicts), 0, []

    def run_command(self, argv):
        assert argv[1] == "-t"
        self.tests += 1
        verdict = self.verdicts.pop(0) if self.verdicts else None
        return (0, "", "") if verdict is None else (1, "", verdict)


@pytest.fixture
def edge(tmp_path, monkeypatch):
    root = tmp_path / "edge"
    (root / "routes").mkdir(parents=True)
    (root / "run").mkdir()
    reloads = []
    monkeypatch.setattr(_edge_route.Edge, "reload", lambda self: reloads.append(1))
    monkeypatch.setattr(_edge_route.Edge, "accepting_workers", lambda self: set())
    return root, reloads


def params(root, **overrides):
    base = {"config_root": str(root), "config_file": None, "organization": ORG, "domain": "zone.test",
            "upstream": "127.0.0.1:21001", "state": "present", "owner": "alloc-1", "force": False,
            "listen_url": None, "nginx_binary": "/usr/sbin/nginx", "reload_timeout": 1.0, "lock_timeout": 1.0,
            "reach_path": None, "reach_timeout": 0.3}
    base.update(overrides)
    return base


def shard(root):
    return root / "routes" / ("orgs-%s.conf" % ORG[:2])


def test_a_route_is_written_validated_and_reloaded(edge):
    root, reloads = edge
    nginx = Nginx(root, [None])
    result = ensure_route(params(root), False, nginx.run_command, print)
    assert result["changed"] and reloads == [1] and nginx.tests == 1
    assert parse_shard(shard(root).read_text())[LABEL] == render_entry(LABEL, "%s.zone.test" % LABEL, "127.0.0.1:21001", "alloc-1")
    again = ensure_route(params(root), False, nginx.run_command, print)
    assert not again["changed"] and reloads == [1], "an unchanged route is not reloaded"


def test_a_rejected_route_puts_the_previous_shard_back(edge):
    root, reloads = edge
    ensure_route(params(root, organization="0b5e9b7c-1a2b-4c3d-8e9f-000000000001"), False, Nginx(root, []).run_command, print)
    before = shard(root).read_text()
    nginx = Nginx(root, ["bad upstream", None])
    with pytest.raises(EdgeError, match="rejected the route .* the previous routes are back: bad upstream"):
        ensure_route(params(root), False, nginx.run_command, print)
    assert shard(root).read_text() == before and nginx.tests == 2
    assert reloads == [1], "no reload for the rejected change"


def test_a_configuration_broken_elsewhere_changes_nothing(edge):
    root, reloads = edge
    nginx = Nginx(root, ["broken foreign file", "broken foreign file"])
    with pytest.raises(EdgeError, match="already broken before this change, nothing was changed"):
        ensure_route(params(root), False, nginx.run_command, print)
    assert not shard(root).exists() and reloads == []


def test_a_failed_reload_puts_the_previous_shard_back(edge, monkeypatch):
    root, dummy = edge

    def no_nginx(self):
        raise EdgeError("nginx under %s is not running" % self.root)

    monkeypatch.setattr(_edge_route.Edge, "reload", no_nginx)
    with pytest.raises(EdgeError, match="not running"):
        ensure_route(params(root), False, Nginx(root, []).run_command, print)
    assert not shard(root).exists(), "no route on disk that is not live"


def test_another_owners_route_is_refused_unless_forced(edge):
    root, dummy = edge
    ensure_route(params(root), False, Nginx(root, []).run_command, print)
    with pytest.raises(InvalidInputError, match="owned by alloc-1, not by alloc-2"):
        ensure_route(params(root, owner="alloc-2", upstream="127.0.0.1:21002"), False, Nginx(root, []).run_command, print)
    forced = ensure_route(params(root, owner="alloc-2", upstream="127.0.0.1:21002", force=True), False,
                          Nginx(root, []).run_command, print)
    assert forced["changed"] and entry_owner(parse_shard(shard(root).read_text())[LABEL]) == "alloc-2"


def test_removal_checks_the_owner_too(edge):
    root, dummy = edge
    ensure_route(params(root), False, Nginx(root, []).run_command, print)
    with pytest.raises(InvalidInputError, match="owned by alloc-1"):
        ensure_route(params(root, state="absent", owner="alloc-9"), False, Nginx(root, []).run_command, print)
    assert ensure_route(params(root, state="absent"), False, Nginx(root, []).run_command, print)["changed"]
    assert not shard(root).exists()


def test_a_hand_written_line_in_a_shard_is_not_dropped_silently(edge):
    root, reloads = edge
    ensure_route(params(root, organization="0b5e9b7c-1a2b-4c3d-8e9f-000000000001"), False, Nginx(root, []).run_command, print)
    with open(shard(root), "a") as handle:
        handle.write(".legacy.zone.test 127.0.0.1:9000;\n")
    with pytest.raises(InvalidInputError, match="lines edge_route did not write.*legacy.zone.test"):
        ensure_route(params(root), False, Nginx(root, []).run_command, print)
    assert ".legacy.zone.test" in shard(root).read_text()


def test_check_mode_writes_nothing(edge):
    root, reloads = edge
    result = ensure_route(params(root), True, Nginx(root, []).run_command, print)
    assert result["changed"] and not shard(root).exists() and reloads == []


def test_owner_is_read_from_the_entry_header():
    entry = render_entry(LABEL, "h", "127.0.0.1:1", "alloc-7")
    assert entry_owner(entry) == "alloc-7"
    assert entry_owner(render_entry(LABEL, "h", "127.0.0.1:1", None)) is None
    text = render_shard({LABEL: entry})
    assert unmanaged_lines(text) == []
    assert unmanaged_lines(text + ".x 1.2.3.4:5;\n") == ["4: .x 1.2.3.4:5;"]


def test_list_routes_reads_owner_and_upstream(edge):
    root, dummy = edge
    ensure_route(params(root), False, Nginx(root, []).run_command, print)
    assert list_routes(str(root)) == [{"organization": ORG, "owner": "alloc-1", "host": "%s.zone.test" % LABEL,
                                       "upstream": "127.0.0.1:21001", "path": str(shard(root))}]


@pytest.mark.parametrize("upstream", ["127.0.0.1:99999", "127.0.0.1:0", "gateway.example:80", "127.0.0.1:80\n", "127.0.0.1"])
def test_bad_upstreams_are_refused(upstream):
    with pytest.raises(InvalidInputError, match="is not <ip>:<port>"):
        parse_upstream(upstream)


def test_upstreams_are_normalized():
    assert parse_upstream("[::1]:80") == "[::1]:80"
    assert parse_upstream("127.0.0.1:080") == "127.0.0.1:80"


class PickyNginx:
    """nginx -t that rejects any shard routing to port 13 (the fault a value nginx refuses would be)."""

    def __init__(self, root):
        self.root, self.tests = root, 0

    def run_command(self, argv):
        self.tests += 1
        for path in sorted((self.root / "routes").glob("*.conf")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if line.endswith(":13;"):
                    return 1, "", "nginx: [emerg] refused in %s:%d" % (path, number)
        return 0, "", ""


def organizations(count):
    return ["%08x-1a2b-4c3d-8e9f-%012x" % (n * 7919, n) for n in range(1, count + 1)]


def batch(root, items, **overrides):
    return params(root, organization=None, routes=[dict({"state": "present", "owner": "alloc-%d" % n}, **item)
                                                   for n, item in enumerate(items)], **overrides)


def routed_upstreams(root):
    return {route["organization"]: route["upstream"] for route in list_routes(str(root))}


def test_a_batch_goes_live_with_one_validation_and_one_reload(edge):
    root, reloads = edge
    orgs = organizations(300)
    nginx = PickyNginx(root)
    result = _edge_route.ensure_routes(batch(root, [{"organization": o, "upstream": "127.0.0.1:%d" % (20000 + n)}
                                                    for n, o in enumerate(orgs)]), False, nginx.run_command, print)
    assert result["changed"] and result["changed_organizations"] == sorted(orgs) and result["failed_organizations"] == {}
    assert nginx.tests == 1 and reloads == [1]
    assert routed_upstreams(root) == {o: "127.0.0.1:%d" % (20000 + n) for n, o in enumerate(orgs)}
    again = _edge_route.ensure_routes(batch(root, [{"organization": o, "upstream": "127.0.0.1:%d" % (20000 + n)}
                                                   for n, o in enumerate(orgs)]), False, nginx.run_command, print)
    assert not again["changed"] and reloads == [1], "an unchanged batch is neither tested nor reloaded"
    gone = _edge_route.ensure_routes(batch(root, [{"organization": o, "state": "absent"} for o in orgs[:100]]),
                                     False, nginx.run_command, print)
    assert gone["changed_organizations"] == sorted(orgs[:100]) and reloads == [1, 1]
    assert sorted(routed_upstreams(root)) == sorted(orgs[100:])


def test_each_refusal_in_a_batch_fails_only_its_own_organization(edge):
    root, reloads = edge
    orgs = organizations(64)
    _edge_route.ensure_routes(batch(root, [{"organization": orgs[0], "upstream": "127.0.0.1:21000"}]), False,
                              PickyNginx(root).run_command, print)
    items = [{"organization": o, "upstream": "127.0.0.1:%d" % (21000 + n)} for n, o in enumerate(orgs)]
    items[0]["owner"] = "someone-else"         # owned by alloc-0: refused
    items[5]["upstream"] = "gateway.example:80"  # not an ip:port: refused before nginx sees it
    items[17]["upstream"] = "127.0.0.1:13"       # nginx rejects it
    items[40]["upstream"] = "127.0.0.1:13"
    items.append({"organization": "not-a-uuid", "upstream": "127.0.0.1:21999"})
    nginx = PickyNginx(root)
    with pytest.raises(EdgeError) as failed:
        _edge_route.ensure_routes(batch(root, items), False, nginx.run_command, print)
    details = failed.value.details
    assert set(details["failed_organizations"]) == {orgs[0], orgs[5], orgs[17], orgs[40], "not-a-uuid"}
    assert "owned by alloc-0" in details["failed_organizations"][orgs[0]]
    assert "rejected the route" in details["failed_organizations"][orgs[17]]
    assert "5 of 65 routes were not changed" in failed.value.msg
    live = routed_upstreams(root)
    assert live[orgs[0]] == "127.0.0.1:21000" and orgs[17] not in live and orgs[40] not in live and orgs[5] not in live
    assert all(live[o] == "127.0.0.1:%d" % (21000 + n) for n, o in enumerate(orgs) if n not in (0, 5, 17, 40))
    assert details["changed"] and len(details["changed_organizations"]) == 60
    # Two bad entries among 62 are found by halving, not one test per entry; one reload.
    assert nginx.tests < 30 and reloads == [1, 1]


def test_a_batch_in_check_mode_reports_and_writes_nothing(edge):
    root, reloads = edge
    orgs = organizations(3)
    result = _edge_route.ensure_routes(batch(root, [{"organization": o, "upstream": "127.0.0.1:21000"} for o in orgs]),
                                       True, PickyNginx(root).run_command, print)
    assert result["changed_organizations"] == sorted(orgs) and list_routes(str(root)) == [] and reloads == []
    assert not (root / "run" / "route-queue").exists(), "check mode writes nothing, not even the queue"


def test_concurrent_changes_are_group_committed(edge, monkeypatch):
    """Twenty jobs at once: every route goes live, with far fewer validations and reloads than jobs."""
    root, dummy = edge
    log = root / "nginx.log"

    def slow_test(argv):
        with open(log, "a") as handle:
            handle.write("test\n")
        time.sleep(0.05)
        return 0, "", ""

    monkeypatch.setattr(_edge_route.Edge, "reload", lambda self: open(log, "a").write("reload\n"))
    orgs = organizations(20)
    context = multiprocessing.get_context("fork")

    def job(organization, port):
        result = ensure_route(params(root, organization=organization, upstream="127.0.0.1:%d" % port), False, slow_test, print)
        os._exit(0 if result["changed"] else 1)

    jobs = [context.Process(target=job, args=(o, 20000 + n)) for n, o in enumerate(orgs)]
    for process in jobs:
        process.start()
    for process in jobs:
        process.join(30)
    assert [process.exitcode for process in jobs] == [0] * 20
    assert routed_upstreams(root) == {o: "127.0.0.1:%d" % (20000 + n) for n, o in enumerate(orgs)}
    calls = log.read_text().split()
    assert 1 <= calls.count("reload") < 10 and calls.count("test") == calls.count("reload"), calls
    assert os.listdir(root / "run" / "route-queue") == [], "every request and answer is gone"


def test_a_request_whose_job_died_is_dropped(edge):
    root, reloads = edge
    queue = root / "run" / "route-queue"
    queue.mkdir()
    dead = {"pid": 2 ** 22 + 1, "started": "1", "request": {"domain": "zone.test", "force": False, "items": [
        {"organization": ORG, "upstream": "127.0.0.1:21009", "owner": "alloc-9", "state": "present"}]}}
    (queue / "00000000000000000001-1-00.req").write_text(json.dumps(dead))
    (queue / "00000000000000000002-1-00.req").write_text('{"pid": 1, "sta')  # a torn write
    other = "0b5e9b7c-1a2b-4c3d-8e9f-000000000001"
    assert ensure_route(params(root, organization=other), False, Nginx(root, []).run_command, print)["changed"]
    assert list(routed_upstreams(root)) == [other] and os.listdir(queue) == []


def test_a_job_that_cannot_get_the_lock_withdraws_its_change(edge):
    root, reloads = edge
    with open(root / "run" / "routes.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(EdgeError, match="Could not lock .* the route was not changed"):
            ensure_route(params(root, lock_timeout=0.2), False, Nginx(root, []).run_command, print)
    assert os.listdir(root / "run" / "route-queue") == [] and not shard(root).exists() and reloads == []


def test_changes_a_dead_holder_left_unfinished_are_made_live_again(edge):
    """A holder killed between writing a shard and reloading: the next holder reloads, and the
    change of a job still waiting for it is applied (its route is already on disk)."""
    root, reloads = edge
    queue = root / "run" / "route-queue"
    queue.mkdir()
    item = {"organization": ORG, "upstream": "127.0.0.1:21001", "owner": "alloc-1", "state": "present"}
    rid = "00000000000000000001-%d-00" % os.getpid()
    (queue / (rid + ".claimed")).write_text(json.dumps({"pid": os.getpid(), "started": _edge_route.process_start_time(os.getpid()),
                                                        "request": {"domain": "zone.test", "force": False, "items": [item]}}))
    shard(root).write_text(render_shard({LABEL: render_entry(LABEL, "%s.zone.test" % LABEL, "127.0.0.1:21001", "alloc-1")}))
    nginx = Nginx(root, [])
    again = ensure_route(params(root), False, nginx.run_command, print)
    assert not again["changed"], "on disk already: nothing to change"
    assert reloads == [1] and nginx.tests == 1, "but it was not live: validated and reloaded"
    answer = json.loads((queue / (rid + ".res")).read_text())
    assert list(answer["done"]) == [LABEL], "the waiting job learns its change is live"
    assert ensure_route(params(root), False, nginx.run_command, print)["changed"] is False and reloads == [1]


def test_the_listing_says_when_a_dead_holder_left_changes_and_an_empty_batch_makes_them_live(edge):
    """What reconcile.yml relies on: the routes on disk are all it wants, so it asks for none, and
    the call still validates and reloads, says so, and leaves nothing unfinished."""
    root, reloads = edge
    assert _edge_route.left_unfinished(str(root)) is False, "no queue yet: nothing unfinished, and nothing made"
    assert not (root / "run" / "route-queue").exists()
    queue = root / "run" / "route-queue"
    queue.mkdir()
    item = {"organization": ORG, "upstream": "127.0.0.1:21001", "owner": "alloc-1", "state": "present"}
    (queue / "00000000000000000001-1-00.claimed").write_text(json.dumps(
        {"pid": 1, "started": "dead", "request": {"domain": "zone.test", "force": False, "items": [item]}}))
    shard(root).write_text(render_shard({LABEL: render_entry(LABEL, "%s.zone.test" % LABEL, "127.0.0.1:21001", "alloc-1")}))
    listing = _edge_route.EDGE_ROUTE_INFO.execute(Call({"config_root": str(root)}, False, False, None))
    assert listing["unfinished"] is True and [route["organization"] for route in listing["routes"]] == [ORG]
    nginx = Nginx(root, [])
    predicted = _edge_route.ensure_routes(batch(root, []), True, nginx.run_command, print)
    assert predicted["changed"] and predicted["made_live"] and reloads == [] and nginx.tests == 0
    result = _edge_route.ensure_routes(batch(root, []), False, nginx.run_command, print)
    assert result["changed"] and result["made_live"] and result["changed_organizations"] == []
    assert reloads == [1] and nginx.tests == 1
    assert _edge_route.left_unfinished(str(root)) is False
    again = _edge_route.ensure_routes(batch(root, []), False, nginx.run_command, print)
    assert not again["changed"] and not again["made_live"] and reloads == [1]


class EdgeAnswers:
    """A listener that answers every request as the edge's nginx would: a status, and the address
    it reached in X-Demiurge-Reached; it records each request's first lines."""

    def __init__(self, status, reached):
        import socket
        import threading
        self.requests = []
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.url = "http://127.0.0.1:%d" % self.server.getsockname()[1]

        def serve():
            while True:
                try:
                    conn, dummy = self.server.accept()
                except OSError:
                    return
                with conn:
                    self.requests.append(conn.recv(4096).decode().split("\r\n")[:2])
                    conn.sendall(("HTTP/1.1 %d X\r\nX-Demiurge-Reached: %s\r\nContent-Length: 0\r\n\r\n"
                                  % (status, reached)).encode())
        threading.Thread(target=serve, daemon=True).start()

    def close(self):
        self.server.close()


@pytest.mark.parametrize("status, reached, why", [
    (502, "127.0.0.1:21001", "HTTP 502, nginx reached 127.0.0.1:21001"),  # the lab's case: the gateway is on another host's loopback
    (200, "127.0.0.1:29999", "HTTP 200, nginx reached 127.0.0.1:29999"),  # another gateway answered
])
def test_a_route_that_does_not_reach_its_gateway_fails_as_the_gateways_fault(edge, monkeypatch, status, reached, why):
    root, reloads = edge
    answers = EdgeAnswers(status, reached)
    monkeypatch.setattr(_edge_route.Edge, "wait_served", lambda self, host, upstream: True)
    try:
        with pytest.raises(EdgeError, match=why) as failure:
            ensure_route(params(root, listen_url=answers.url, reach_path="/collab/ping"), False, Nginx(root, [None]).run_command, print)
    finally:
        answers.close()
    assert failure.value.details["gateway_fault"] and failure.value.details["outcome"] == "unknown"
    assert answers.requests[0] == ["GET /collab/ping HTTP/1.1", "Host: %s.zone.test" % LABEL]
    assert "127.0.0.1:21001" in shard(root).read_text(), "left in place for the rollback to withdraw"


def test_a_route_that_reaches_its_gateway_counts(edge, monkeypatch):
    root, reloads = edge
    answers = EdgeAnswers(200, "127.0.0.1:21001")
    monkeypatch.setattr(_edge_route.Edge, "wait_served", lambda self, host, upstream: True)
    try:
        for dummy in range(2):  # unchanged the second time, and checked all the same
            ensure_route(params(root, listen_url=answers.url, reach_path="/collab/ping"), False, Nginx(root, [None]).run_command, print)
    finally:
        answers.close()
    assert len(answers.requests) == 2 and len(reloads) == 1


@pytest.mark.parametrize("overrides", [{"reach_path": "", "listen_url": "http://127.0.0.1:1"},
                                       {"reach_path": "/collab/ping", "listen_url": None},
                                       {"reach_path": "/collab/ping", "listen_url": ""}])
def test_a_reach_check_that_cannot_run_is_refused_before_anything_changes(edge, overrides):
    root, reloads = edge
    with pytest.raises(InvalidInputError, match="reach_path .* needs a path starting with / and the edge's listen_url"):
        ensure_route(params(root, **overrides), False, Nginx(root, []).run_command, print)
    assert not shard(root).exists() and reloads == []
