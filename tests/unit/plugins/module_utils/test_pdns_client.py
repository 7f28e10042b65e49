import pytest

from ansible_collections.demiurge.gateway.plugins.module_utils import _pdns_client
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import (
    InvalidInputError,
    PdnsAuthError,
    PdnsError,
    PdnsNotFoundError,
    PdnsUnreachableError,
)
from scripted_http import Call, ScriptedHttp, refused

BASE = "http://127.0.0.1:8081/api/v1/servers/localhost"


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(_pdns_client, "_BACKOFF_SECONDS", 0)


def script(monkeypatch, calls):
    http = ScriptedHttp("k3y", calls)
    monkeypatch.setattr(_pdns_client, "open_url", http)
    return http


def client(retries=3):
    return _pdns_client.PdnsClient("http://127.0.0.1:8081/", "k3y", retries=retries)


def test_request_sends_key_json_and_decodes_answer(monkeypatch):
    http = script(monkeypatch, [Call("PATCH", BASE + "/zones/z.test.", body={"rrsets": []}, status=204)])
    assert client().request("PATCH", client().zone_path("z.test."), {"rrsets": []}) is None
    http.assert_done()


def test_transient_failures_are_retried_then_succeed(monkeypatch):
    http = script(monkeypatch, [
        Call("GET", BASE, error=refused()),
        Call("GET", BASE, status=503, answer={"error": "busy"}),
        Call("GET", BASE, answer={"id": "localhost"}),
    ])
    assert client().request("GET", client().server_path()) == {"id": "localhost"}
    http.assert_done()


def test_unreachable_after_bounded_retries(monkeypatch):
    http = script(monkeypatch, [Call("GET", BASE, error=refused()) for dummy in range(3)])
    with pytest.raises(PdnsUnreachableError, match="after 3 attempts"):
        client(retries=2).request("GET", client().server_path())
    http.assert_done()


@pytest.mark.parametrize("status,error", [(401, PdnsAuthError), (403, PdnsAuthError), (404, PdnsNotFoundError), (422, PdnsError)])
def test_client_errors_are_not_retried(monkeypatch, status, error):
    http = script(monkeypatch, [Call("GET", BASE, status=status, answer={"error": "nope"})])
    with pytest.raises(error) as caught:
        client().request("GET", client().server_path())
    assert caught.value.status == status
    http.assert_done()


def test_unprocessable_entity_quotes_powerdns_message(monkeypatch):
    script(monkeypatch, [Call("PATCH", BASE + "/zones/z.test.", body={}, status=422,
                              answer={"error": "RRset a.z.test. IN A: Conflicts with pre-existing RRset"})])
    with pytest.raises(PdnsError, match="Conflicts with pre-existing RRset"):
        client().request("PATCH", client().zone_path("z.test."), {})


def test_names_in_paths_are_escaped():
    assert client().zone_path("a/b.") == "/servers/localhost/zones/a%2Fb."


def test_non_http_url_is_refused():
    with pytest.raises(InvalidInputError, match="not an http"):
        _pdns_client.PdnsClient("127.0.0.1:8081", "k")


def test_flush_cache_names_the_domain(monkeypatch):
    http = script(monkeypatch, [Call("PUT", BASE + "/cache/flush?domain=z.test.", answer={"count": 3})])
    client().flush_cache("z.test.")
    http.assert_done()
