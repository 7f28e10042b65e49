from ansible_collections.demiurge.gateway.plugins.module_utils import _pdns_client
from ansible_collections.demiurge.gateway.plugins.module_utils._pdns_zone import ensure_zone
from scripted_http import Call, ScriptedHttp

BASE = "http://pdns:8081/api/v1/servers/localhost"
ZONE_URL = BASE + "/zones/z.test."


def params(**overrides):
    base = {"name": "Z.test", "state": "present", "kind": "Native", "nameservers": [], "ns_ttl": 3600}
    base.update(overrides)
    return base


def existing(nameservers=("ns1.z.test.",), kind="Native"):
    return {"kind": kind, "serial": 1, "rrsets": [
        {"name": "z.test.", "type": "NS", "records": [{"content": ns} for ns in nameservers]},
        {"name": "z.test.", "type": "SOA", "records": [{"content": "ns1.z.test. h.z.test. 1 2 3 4 5"}]},
    ]}


def run(monkeypatch, calls, check_mode=False, **overrides):
    http = ScriptedHttp("k", calls)
    monkeypatch.setattr(_pdns_client, "open_url", http)
    result = ensure_zone(_pdns_client.PdnsClient("http://pdns:8081", "k"), params(**overrides), check_mode)
    http.assert_done()
    return result


def test_missing_zone_is_created_and_cache_flushed(monkeypatch):
    result = run(monkeypatch, [
        Call("GET", ZONE_URL, status=404, answer={"error": "Could not find domain"}),
        Call("POST", BASE + "/zones", body={"name": "z.test.", "kind": "Native", "nameservers": ["ns1.z.test."],
                                            "soa_edit_api": "DEFAULT"}, status=201, answer={"id": "z.test."}),
        Call("PUT", BASE + "/cache/flush?domain=z.test.", answer={"count": 0}),
    ])
    assert result["changed"] and result["zone"] == "z.test."
    assert result["diff"] == {"before": {}, "after": {"kind": "Native", "nameservers": ["ns1.z.test."]}}


def test_check_mode_only_reads(monkeypatch):
    result = run(monkeypatch, [Call("GET", ZONE_URL, status=404, answer={"error": "nope"})], check_mode=True)
    assert result["changed"]


def test_matching_zone_is_left_alone(monkeypatch):
    assert not run(monkeypatch, [Call("GET", ZONE_URL, answer=existing())])["changed"]


def test_nameserver_drift_is_replaced(monkeypatch):
    result = run(monkeypatch, [
        Call("GET", ZONE_URL, answer=existing(("old.ns.test.",))),
        Call("PATCH", ZONE_URL, status=204, body={"rrsets": [{
            "name": "z.test.", "type": "NS", "ttl": 3600, "changetype": "REPLACE",
            "records": [{"content": "ns1.z.test.", "disabled": False}]}]}),
        Call("PUT", BASE + "/cache/flush?domain=z.test.", answer={"count": 1}),
    ])
    assert result["changed"]


def test_absent_deletes(monkeypatch):
    result = run(monkeypatch, [
        Call("GET", ZONE_URL, answer=existing()),
        Call("DELETE", ZONE_URL, status=204),
        Call("PUT", BASE + "/cache/flush?domain=z.test.", answer={"count": 1}),
    ], state="absent")
    assert result["changed"] and result["diff"]["after"] == {}


def test_absent_on_missing_zone_is_a_no_op(monkeypatch):
    assert not run(monkeypatch, [Call("GET", ZONE_URL, status=404, answer={})], state="absent")["changed"]
