"""edge_route's logic on real files, with nginx -t and the reload scripted."""

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
            "listen_url": None, "nginx_binary": "/usr/sbin/nginx", "reload_timeout": 1.0, "lock_timeout": 1.0}
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
