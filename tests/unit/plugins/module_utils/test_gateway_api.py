"""The gateway's contract as the collection uses it: handshake and recycle, with HTTP and the
service scripted, the data directory real."""

import io
import json
import socket
import uuid

import pytest
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError

from ansible_collections.demiurge.gateway.plugins.module_utils import _gateway_api, _pool_ops
from ansible_collections.demiurge.gateway.plugins.module_utils._gateway_api import GatewayApiError, handshake, recycle, session_info, wipe
from ansible_collections.demiurge.gateway.plugins.module_utils._gateway_api import Service as REAL_SERVICE
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import DatabaseError
from ansible_collections.demiurge.gateway.plugins.module_utils._module import Call, failure

ORG = "0b5e9b7c-1a2b-4c3d-8e9f-001122334455"


class Gateway:
    """open_url for one gateway: each call is recorded; `answers` maps a path to a status, or an
    exception to raise."""

    def __init__(self, answers):
        self.answers, self.calls = answers, []

    def __call__(self, url, method=None, data=None, headers=None, timeout=None, **kwargs):
        path = url.split("//", 1)[1].split("/", 1)[1]
        self.calls.append((method, "/" + path, json.loads(data) if data else None))
        if not Service.up:  # a stopped gateway refuses connections
            raise URLError(ConnectionRefusedError(111, "Connection refused"))
        answer = self.answers["/" + path]
        if isinstance(answer, Exception):
            raise answer
        if answer >= 400:
            raise HTTPError(url, answer, "error", {}, io.BytesIO(b'{"error": "no"}'))
        response = io.BytesIO(b"{}")
        response.getcode = lambda: answer
        return response


def session_call(check_mode=False, **params):
    return Call(dict({"api_url": "http://10.0.0.5:21001", "organization": ORG.upper(), "allocation_id": "a1",
                      "lease_holder": "run-1", "timeout": 1.0, "sessions": None, "concurrency": 4}, **params),
                check_mode, False, None)


class Tokens(list):
    """The pool's side of the handshake: tokens stored, and whether the platform API exchanged them
    (every stored token is, unless `exchanged` is set to False)."""

    exchanged = True


@pytest.fixture
def tokens(monkeypatch):
    stored = Tokens()
    monkeypatch.setattr(_pool_ops, "store_handshake_token", lambda params, allocation, holder, token: stored.append(
        (allocation, holder, token)))
    monkeypatch.setattr(_pool_ops, "handshake_exchanged", lambda params, allocation, token: stored.exchanged and (
        allocation, params["lease_holder"], token) in stored)
    return stored


def test_the_handshake_stores_a_token_then_presents_it(monkeypatch, tokens):
    gateway = Gateway({"/collab/start": 200})
    monkeypatch.setattr(_gateway_api, "open_url", gateway)
    result = handshake(session_call())
    assert result["changed"] and result["organization"] == ORG
    (allocation, holder, token), = tokens
    assert (allocation, holder) == ("a1", "run-1") and str(uuid.UUID(token)) == token
    assert gateway.calls == [("POST", "/collab/start", {"tmp_handshake_token": token})], "the token alone, never the org"


def test_a_200_without_the_token_exchanged_is_no_handshake(monkeypatch, tokens):
    """The real gateway answers 200 {} when the platform API refused its token (403): only the
    exchange recorded in the pool counts."""
    monkeypatch.setattr(_gateway_api, "open_url", Gateway({"/collab/start": 200}))
    tokens.exchanged = False
    with pytest.raises(GatewayApiError, match="answered the handshake for organization %s with 200, but the platform API "
                       "never exchanged its token" % ORG) as raised:
        handshake(session_call())
    assert "GANYMEDE_FQDN" in str(raised.value) and failure(raised.value)["outcome"] == "not_applied"


def test_a_refused_handshake_says_nothing_was_applied(monkeypatch, tokens):
    monkeypatch.setattr(_gateway_api, "open_url", Gateway({"/collab/start": URLError(ConnectionRefusedError(111, "refused"))}))
    with pytest.raises(GatewayApiError, match="refused POST /collab/start") as raised:
        handshake(session_call())
    assert failure(raised.value)["outcome"] == "not_applied"


def test_a_timed_out_handshake_is_an_unknown_outcome(monkeypatch, tokens):
    monkeypatch.setattr(_gateway_api, "open_url", Gateway({"/collab/start": URLError(socket.timeout("timed out"))}))
    with pytest.raises(GatewayApiError, match="did not answer") as raised:
        handshake(session_call())
    assert failure(raised.value)["outcome"] == "unknown"


def test_a_handshake_the_gateway_refuses_names_the_status(monkeypatch, tokens):
    monkeypatch.setattr(_gateway_api, "open_url", Gateway({"/collab/start": 500}))
    with pytest.raises(GatewayApiError, match="refused the handshake for organization %s: HTTP 500" % ORG):
        handshake(session_call())


def test_check_mode_neither_stores_nor_sends(monkeypatch, tokens):
    gateway = Gateway({})
    monkeypatch.setattr(_gateway_api, "open_url", gateway)
    assert handshake(session_call(check_mode=True))["changed"]
    assert tokens == [] and gateway.calls == []


class Gateways:
    """open_url for many gateways, by host: port; answers as Gateway's, from several threads."""

    def __init__(self, answers):
        self.answers, self.calls = answers, []

    def __call__(self, url, method=None, data=None, headers=None, timeout=None, **kwargs):
        self.calls.append(url)
        return Gateway({"/collab/start": self.answers[url.split("//", 1)[1].split("/", 1)[0]]})(url, method, data, headers, timeout)


def test_many_handshakes_each_fail_alone_and_say_whether_they_may_have_applied(monkeypatch, tokens):
    orgs = ["%08x-1a2b-4c3d-8e9f-001122334455" % n for n in range(6)]
    answers = {"10.0.0.%d:21001" % n: 200 for n in range(6)}
    answers["10.0.0.2:21001"] = URLError(ConnectionRefusedError(111, "refused"))
    answers["10.0.0.4:21001"] = URLError(socket.timeout("timed out"))
    monkeypatch.setattr(_gateway_api, "open_url", Gateways(answers))
    sessions = [{"api_url": "http://10.0.0.%d:21001" % n, "organization": org, "allocation_id": "a%d" % n}
                for n, org in enumerate(orgs)]
    with pytest.raises(GatewayApiError, match="2 of 6 gateways were not handed") as raised:
        handshake(session_call(organization=None, api_url=None, allocation_id=None, sessions=sessions))
    details = raised.value.details
    assert sorted(details["organizations"]) == sorted(orgs[:2] + [orgs[3], orgs[5]])
    assert sorted(details["failed_organizations"]) == [orgs[2], orgs[4]] and details["unknown_organizations"] == [orgs[4]]
    assert sorted(allocation for allocation, holder, token in tokens) == ["a%d" % n for n in range(6)], "a token each"
    assert len({token for dummy, dummy2, token in tokens}) == 6


def test_many_handshakes_in_check_mode_neither_store_nor_send(monkeypatch, tokens):
    gateway = Gateway({})
    monkeypatch.setattr(_gateway_api, "open_url", gateway)
    result = handshake(session_call(check_mode=True, organization=None, api_url=None, allocation_id=None,
                                    sessions=[{"api_url": "http://10.0.0.1:1", "organization": ORG, "allocation_id": "a1"}]))
    assert result["changed"] and result["organizations"] == [ORG] and tokens == [] and gateway.calls == []


class Service:
    """The gateway's service, scripted: records stop and start; a start can write into the data
    directory (a gateway that restores state on its own) or fail."""

    events = []
    up = True

    def __init__(self, spec, run_command):
        self.spec = spec

    def running(self):
        return self.spec.get("running", True)

    def stop(self):
        Service.events.append("stop")
        Service.up = self.spec.get("survives_stop", False)
        return False

    def start(self):
        Service.events.append("start")
        Service.up = True
        if self.spec.get("writes_on_start"):
            with open(self.spec["writes_on_start"], "w") as handle:
                handle.write("{}")
        if self.spec.get("fails"):
            raise GatewayApiError("exec failed")


def recycle_call(data_dir, service=None, state="recycled"):
    return Call({"name": "gw-1", "api_url": "http://10.0.0.5:21001", "data_dir": data_dir and str(data_dir),
                 "tmp_dir": data_dir and str(data_dir.parent / "tmp"), "service": service or {"daemon": {}},
                 "health_path": "/collab/ping", "timeout": 1.0, "health_timeout": 0.3, "state": state}, False, False, None)


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    Service.events, Service.up = [], True
    monkeypatch.setattr(_gateway_api, "Service", Service)
    root = tmp_path / "data"
    (root / "projects" / "p-1").mkdir(parents=True)
    (root / "projects" / "p-1" / "doc.yjs").write_bytes(b"yjs")
    (root / "state.json").write_text('{"tokens": ["secret"]}')
    # The gateway's private /tmp: the session it re-enters on start, token included.
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / "project-config.json").write_text('{"organization_token": "secret"}')
    return root


def test_recycle_stops_wipes_then_starts_and_checks_health(monkeypatch, data_dir):
    gateway = Gateway({"/collab/ping": 200})
    monkeypatch.setattr(_gateway_api, "open_url", gateway)
    result = recycle(recycle_call(data_dir))
    assert result == {"changed": True, "verified": True, "healthy": True, "reason": None}
    assert Service.events == ["stop", "start"] and list(data_dir.iterdir()) == []
    assert list((data_dir.parent / "tmp").iterdir()) == [], "the session in its /tmp is gone too"
    assert gateway.calls == [("GET", "/collab/ping", None)] * 2, "refused once stopped, answered once started"


def test_recycle_removes_what_a_restore_and_a_snapshot_left_beside_the_data(monkeypatch, data_dir):
    """A killed restore leaves its staging (the organization's data, tokens included) beside the
    data directory, and a snapshot its note: both are the organization's."""
    monkeypatch.setattr(_gateway_api, "open_url", Gateway({"/collab/ping": 200}))
    staging = data_dir.parent / ".data.restore"
    (staging / "projects").mkdir(parents=True)
    (staging / "state.json").write_text('{"oauth": "token"}')
    (data_dir.parent / ".data.snapshot-state.json").write_text('{"organization": "%s"}' % ORG)
    assert recycle(recycle_call(data_dir))["verified"]
    assert sorted(p.name for p in data_dir.parent.iterdir()) == ["data", "tmp"]


def test_a_gateway_that_re_enters_a_session_on_start_is_not_verified(monkeypatch, data_dir):
    monkeypatch.setattr(_gateway_api, "open_url", Gateway({"/collab/ping": 200}))
    session = data_dir.parent / "tmp" / "project-config.json"
    result = recycle(recycle_call(data_dir, {"writes_on_start": str(session)}))
    assert not result["verified"] and "re-entered a session on start" in result["reason"]


def test_an_unhealthy_gateway_is_not_verified(monkeypatch, data_dir):
    monkeypatch.setattr(_gateway_api, "open_url", Gateway({"/collab/ping": 503}))
    result = recycle(recycle_call(data_dir))
    assert not result["verified"] and "did not answer GET /collab/ping with 200" in result["reason"]
    assert list(data_dir.iterdir()) == [], "wiped all the same"


def test_a_gateway_that_writes_data_on_start_is_not_verified(monkeypatch, data_dir):
    monkeypatch.setattr(_gateway_api, "open_url", Gateway({"/collab/ping": 200}))
    result = recycle(recycle_call(data_dir, {"writes_on_start": str(data_dir / "state.json")}))
    assert not result["verified"] and "state.json" in result["reason"]


def test_a_service_that_does_not_start_is_not_verified(monkeypatch, data_dir):
    monkeypatch.setattr(_gateway_api, "open_url", Gateway({"/collab/ping": 200}))
    result = recycle(recycle_call(data_dir, {"fails": True}))
    assert not result["verified"] and "exec failed" in result["reason"]


def test_a_gateway_without_a_data_directory_is_not_verified_and_not_touched(monkeypatch, data_dir):
    monkeypatch.setattr(_gateway_api, "open_url", Gateway({"/collab/ping": 200}))
    result = recycle(recycle_call(None))
    assert not result["verified"] and "names no data directory" in result["reason"] and Service.events == []


def test_stopped_only_stops_and_keeps_everything_on_disk(monkeypatch, data_dir):
    """A release stops the gateway before its snapshot, so what the gateway saves on stop is in it."""
    monkeypatch.setattr(_gateway_api, "open_url", Gateway({"/collab/ping": 200}))
    assert recycle(recycle_call(data_dir, state="stopped"))["changed"]
    assert Service.events == ["stop"] and (data_dir / "state.json").exists()
    assert (data_dir.parent / "tmp" / "project-config.json").exists(), "its session stays, to re-enter if it starts again"
    assert recycle(recycle_call(data_dir, {"daemon": {}, "running": False}, state="stopped"))["changed"] is False


def test_started_starts_a_stopped_gateway_and_waits_for_its_health(monkeypatch, data_dir):
    monkeypatch.setattr(_gateway_api, "open_url", Gateway({"/collab/ping": 200}))
    result = recycle(recycle_call(data_dir, {"daemon": {}, "running": False}, state="started"))
    assert result["changed"] and result["healthy"] and Service.events == ["start"]
    assert (data_dir / "state.json").exists()
    assert recycle(recycle_call(data_dir, state="started"))["changed"] is False, "running and healthy: nothing to do"
    monkeypatch.setattr(_gateway_api, "open_url", Gateway({"/collab/ping": 503}))
    with pytest.raises(GatewayApiError, match="did not answer GET /collab/ping with 200 within 0.3 s after its start"):
        recycle(recycle_call(data_dir, {"daemon": {}, "running": False}, state="started"))


def test_a_gateway_that_still_answers_after_its_stop_is_not_wiped(monkeypatch, data_dir):
    """Its pid file lost, the service stop reaches nothing: the process that serves the organization runs on."""
    monkeypatch.setattr(_gateway_api, "open_url", Gateway({"/collab/ping": 200}))
    result = recycle(recycle_call(data_dir, {"daemon": {}, "survives_stop": True}))
    assert not result["verified"] and "still answers GET /collab/ping after its service was stopped" in result["reason"]
    assert (data_dir / "state.json").exists() and Service.events == ["stop"]
    with pytest.raises(GatewayApiError, match="still answers GET /collab/ping after its service was stopped"):
        recycle(recycle_call(data_dir, {"daemon": {}, "survives_stop": True}, state="stopped"))


@pytest.mark.parametrize("field, value", [("tmp_dir", None), ("data_dir", "relative/data"), ("tmp_dir", "/srv/gw/../gw/tmp")])
def test_a_gateway_whose_directories_are_not_plain_absolute_paths_is_not_touched(monkeypatch, data_dir, field, value):
    monkeypatch.setattr(_gateway_api, "open_url", Gateway({"/collab/ping": 200}))
    call = recycle_call(data_dir)
    call.params[field] = value
    result = recycle(call)
    assert not result["verified"] and Service.events == [] and (data_dir / "state.json").exists()


def test_a_service_description_that_cannot_run_is_a_clear_failure(monkeypatch, data_dir):
    monkeypatch.setattr(_gateway_api, "Service", REAL_SERVICE)
    with pytest.raises(GatewayApiError, match="Could not stop gateway gw-1"):
        recycle(recycle_call(data_dir, {"daemon": {}}, state="stopped"))


def test_wipe_keeps_the_directory_and_nothing_in_it(tmp_path):
    root = tmp_path / "data"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f").write_text("x")
    (root / "link").symlink_to(tmp_path)
    wipe(str(root))
    assert root.is_dir() and list(root.iterdir()) == [] and tmp_path.exists()


def test_a_service_must_be_described():
    with pytest.raises(Exception, match="names no service to restart"):
        _gateway_api.Service({}, None)


@pytest.mark.parametrize("content, expected", [
    (None, {"organization": None, "readable": True}),
    ('{"organization_id": "%s", "organization_token": "secret"}' % ORG.upper(), {"organization": ORG, "readable": True}),
    ("{not json", {"organization": None, "readable": False}),
    ('{"organization_id": "not-a-uuid"}', {"organization": None, "readable": False}),
])
def test_session_info_names_the_organization_and_nothing_else(tmp_path, content, expected):
    if content is not None:
        (tmp_path / "project-config.json").write_text(content)
    result = session_info(Call({"tmp_dir": str(tmp_path), "api_url": None, "health_path": "/collab/ping", "timeout": 1.0},
                               False, False, None))
    assert result == dict(expected, changed=False, healthy=None), "never the token"


def test_session_info_asks_whether_the_gateway_still_answers(monkeypatch, tmp_path):
    """A session file outlives a gateway killed since: reconcile must not roll forward onto it."""
    (tmp_path / "project-config.json").write_text('{"organization_id": "%s"}' % ORG)
    monkeypatch.setattr(_gateway_api, "open_url", Gateway({"/collab/ping": URLError(ConnectionRefusedError(111, "refused"))}))
    result = session_info(Call({"tmp_dir": str(tmp_path), "api_url": "http://10.0.0.5:21001", "health_path": "/collab/ping",
                                "timeout": 1.0}, False, False, None))
    assert result["organization"] == ORG and result["healthy"] is False


def test_an_exchange_that_cannot_be_read_is_an_unknown_outcome(monkeypatch, tokens):
    """The gateway answered 200 and may hold the organization: the journal must say unknown."""
    monkeypatch.setattr(_gateway_api, "open_url", Gateway({"/collab/start": 200}))

    def unreadable(params, allocation, token):
        raise DatabaseError("Pool database db:5432 refused the change: timed out", outcome="not_applied")

    monkeypatch.setattr(_pool_ops, "handshake_exchanged", unreadable)
    with pytest.raises(GatewayApiError, match="could not be read") as raised:
        handshake(session_call())
    assert failure(raised.value)["outcome"] == "unknown"


def test_a_handshake_that_times_out_names_the_platform_api_too(monkeypatch, tokens):
    monkeypatch.setattr(_gateway_api, "open_url", Gateway({"/collab/start": URLError(socket.timeout("timed out"))}))
    with pytest.raises(GatewayApiError, match="GANYMEDE_FQDN"):
        handshake(session_call())


@pytest.mark.parametrize("which", ["data", "tmp"])
def test_recycle_leaves_a_linked_directory_alone_and_is_not_verified(monkeypatch, data_dir, tmp_path, which):
    monkeypatch.setattr(_gateway_api, "open_url", Gateway({"/collab/ping": 200}))
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "canary").write_text("keep me")
    linked = data_dir if which == "data" else data_dir.parent / "tmp"
    linked.rename(tmp_path / ("moved-" + which))
    linked.symlink_to(victim)
    result = recycle(recycle_call(data_dir))
    assert not result["verified"] and "is a link or not a directory" in result["reason"]
    assert (victim / "canary").read_text() == "keep me" and Service.events == []
