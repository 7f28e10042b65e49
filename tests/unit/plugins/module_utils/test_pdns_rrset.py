import socket

import pytest

from ansible_collections.demiurge.gateway.plugins.module_utils import _pdns_client, _pdns_rrset
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import InvalidInputError, PdnsError, PdnsNotFoundError
from ansible_collections.demiurge.gateway.plugins.module_utils._pdns_rrset import (
    ensure_organizations,
    ensure_rrsets,
    normalize_content,
    rrset_info,
)
from scripted_http import Call, ScriptedHttp

ORG = "0b5e9b7c-1a2b-4c3d-8e9f-001122334455"
ZONE_URL = "http://pdns:8081/api/v1/servers/localhost/zones/z.test."
APEX = "org-%s.z.test." % ORG
SUBS = "*.org-%s.z.test." % ORG


def get(name, rtype="A", rrsets=()):
    query = "?rrset_name=%s&rrset_type=%s" % (name.replace("*", "%2A"), rtype)
    return Call("GET", ZONE_URL + query, answer={"name": "z.test.", "rrsets": list(rrsets)})


def rrset(name, records, owner=None, ttl=60, rtype="A"):
    comments = [{"content": "owner=" + owner, "account": "demiurge"}] if owner else []
    return {"name": name, "type": rtype, "ttl": ttl, "comments": comments,
            "records": [{"content": content, "disabled": False} for content in records]}


def replace(name, records, owner, ttl=60):
    return {"name": name, "type": "A", "ttl": ttl, "changetype": "REPLACE", "comments": [
        {"content": "owner=" + owner, "account": "demiurge"}] if owner else [],
        "records": [{"content": content, "disabled": False} for content in records]}


def params(**overrides):
    base = {"zone": "z.test", "name": None, "organization": ORG, "type": "A", "include_subdomains": True,
            "wildcard": False, "state": "present", "records": ["127.0.0.1"], "ttl": 60, "owner": "alloc-1",
            "force": False}
    base.update(overrides)
    return base


def run(monkeypatch, calls, check_mode=False, **overrides):
    http = ScriptedHttp("k", calls)
    monkeypatch.setattr(_pdns_client, "open_url", http)
    try:
        return ensure_rrsets(_pdns_client.PdnsClient("http://pdns:8081", "k"), params(**overrides), check_mode)
    finally:
        http.assert_done()


def test_organization_gets_apex_and_subdomains_in_one_patch(monkeypatch):
    result = run(monkeypatch, [
        get(APEX), get(SUBS),
        Call("PATCH", ZONE_URL, status=204, body={"rrsets": [replace(APEX, ["127.0.0.1"], "alloc-1"),
                                                             replace(SUBS, ["127.0.0.1"], "alloc-1")]}),
    ])
    assert result["changed"] and result["names"] == [APEX, SUBS]
    assert result["rrsets"][0] == {"name": APEX, "type": "A", "ttl": 60, "records": ["127.0.0.1"], "owner": "alloc-1"}


def test_matching_record_sets_are_not_written(monkeypatch):
    result = run(monkeypatch, [get(APEX, rrsets=[rrset(APEX, ["127.0.0.1"], "alloc-1")]),
                               get(SUBS, rrsets=[rrset(SUBS, ["127.0.0.1"], "alloc-1")])])
    assert not result["changed"]


def test_records_are_compared_as_sets_and_ttl_counts(monkeypatch):
    result = run(monkeypatch, [
        get(APEX, rrsets=[rrset(APEX, ["10.0.0.2", "10.0.0.1"], "alloc-1", ttl=300)]),
        Call("PATCH", ZONE_URL, status=204, body={"rrsets": [replace(APEX, ["10.0.0.1", "10.0.0.2"], "alloc-1")]}),
    ], records=["10.0.0.1", "10.0.0.2", "10.0.0.1"], include_subdomains=False)
    assert result["changed"]
    assert result["diff"]["before"][APEX]["ttl"] == 300


def test_check_mode_reads_only(monkeypatch):
    assert run(monkeypatch, [get(APEX), get(SUBS)], check_mode=True)["changed"]


def test_foreign_owner_is_refused_and_named(monkeypatch):
    with pytest.raises(InvalidInputError, match="owned by alloc-OTHER, not by alloc-1") as caught:
        run(monkeypatch, [get(APEX, rrsets=[rrset(APEX, ["127.0.0.2"], "alloc-OTHER")])], include_subdomains=False)
    assert caught.value.details["current_owner"] == "alloc-OTHER"


def test_unowned_record_is_refused_when_an_owner_is_named(monkeypatch):
    with pytest.raises(InvalidInputError, match="owned by nobody"):
        run(monkeypatch, [get(APEX, rrsets=[rrset(APEX, ["127.0.0.2"])])], include_subdomains=False, state="absent")


def test_force_takes_over(monkeypatch):
    result = run(monkeypatch, [
        get(APEX, rrsets=[rrset(APEX, ["127.0.0.2"], "alloc-OTHER")]),
        Call("PATCH", ZONE_URL, status=204, body={"rrsets": [replace(APEX, ["127.0.0.1"], "alloc-1")]}),
    ], include_subdomains=False, force=True)
    assert result["changed"]


def test_absent_deletes_only_what_exists(monkeypatch):
    result = run(monkeypatch, [
        get(APEX, rrsets=[rrset(APEX, ["127.0.0.1"], "alloc-1")]), get(SUBS),
        Call("PATCH", ZONE_URL, status=204, body={"rrsets": [{"name": APEX, "type": "A", "changetype": "DELETE"}]}),
    ], state="absent", records=[])
    assert result["changed"] and result["rrsets"] == []


def test_absent_on_missing_records_is_a_no_op(monkeypatch):
    assert not run(monkeypatch, [get(APEX), get(SUBS)], state="absent", records=[])["changed"]


def test_wildcard_mode_uses_the_shared_record_and_never_deletes_it(monkeypatch):
    shared = rrset("*.z.test.", ["127.0.0.1"], "wildcard")
    created = run(monkeypatch, [
        get("*.z.test."),
        Call("PATCH", ZONE_URL, status=204, body={"rrsets": [replace("*.z.test.", ["127.0.0.1"], "wildcard")]}),
    ], wildcard=True)
    assert created["names"] == ["*.z.test."]
    released = run(monkeypatch, [get("*.z.test.", rrsets=[shared])], wildcard=True, state="absent", records=[])
    assert not released["changed"]


def test_failed_patch_says_nothing_was_written(monkeypatch):
    with pytest.raises(PdnsError, match="nothing was written.*Conflicts"):
        run(monkeypatch, [get(APEX), Call("PATCH", ZONE_URL, status=422, body={"rrsets": [replace(APEX, ["127.0.0.1"], "alloc-1")]},
                                          answer={"error": "Conflicts with pre-existing RRset"})], include_subdomains=False)


@pytest.mark.parametrize("overrides,message", [
    ({"organization": "not-a-uuid"}, "is not a UUID"),
    ({"organization": None, "name": "www.other.test"}, "not inside zone"),
    ({"organization": None, "name": "org-123.z.test"}, "does not match org-<uuid>"),
    ({"records": ["300.1.1.1"]}, "not a valid A record"),
    ({"records": []}, "needs at least one record"),
])
def test_bad_input_fails_before_any_request(monkeypatch, overrides, message):
    with pytest.raises(InvalidInputError, match=message):
        run(monkeypatch, [], **overrides)


def test_normalized_contents():
    assert normalize_content("AAAA", "0:0:0:0:0:0:0:1") == "::1"
    assert normalize_content("CNAME", "Edge.Z.test") == "edge.z.test."
    assert normalize_content("TXT", 'say "hi"') == '"say \\"hi\\""'
    assert normalize_content("TXT", '"already quoted"') == '"already quoted"'


def test_info_lists_existing_record_sets(monkeypatch):
    http = ScriptedHttp("k", [get(APEX, rrsets=[rrset(APEX, ["127.0.0.1"], "alloc-1")]), get(SUBS)])
    monkeypatch.setattr(_pdns_client, "open_url", http)
    result = rrset_info(_pdns_client.PdnsClient("http://pdns:8081", "k"), params())
    assert result["exists"] and [r["name"] for r in result["rrsets"]] == [APEX]
    http.assert_done()


def test_missing_zone_has_its_own_error(monkeypatch):
    missing = Call("GET", ZONE_URL + "?rrset_name=%s&rrset_type=A" % APEX, status=404, answer={"error": "Not Found"})
    with pytest.raises(PdnsNotFoundError, match="Zone z.test. does not exist.*pdns_zone"):
        run(monkeypatch, [missing])


def org(n):
    return "0b5e9b7c-1a2b-4c3d-8e9f-%012x" % n


def names_of(n):
    return ["org-%s.z.test." % org(n), "*.org-%s.z.test." % org(n)]


def run_batch(monkeypatch, calls, items, check_mode=False, **overrides):
    http = ScriptedHttp("k", calls)
    monkeypatch.setattr(_pdns_client, "open_url", http)
    try:
        return ensure_organizations(_pdns_client.PdnsClient("http://pdns:8081", "k", retries=0),
                                    params(organization=None, organizations=items, **overrides), check_mode)
    finally:
        http.assert_done()


def zone_read(*rrsets):
    return Call("GET", ZONE_URL, answer={"name": "z.test.", "rrsets": list(rrsets)})


def test_a_batch_reads_the_zone_once_and_writes_only_what_differs_in_one_patch(monkeypatch):
    kept = [rrset(name, ["127.0.0.1"], "alloc-1") for name in names_of(1)]
    stale = [rrset(names_of(3)[0], ["10.0.0.9"], "alloc-3")]  # wrong address, and no wildcard
    patch = [replace(name, ["127.0.0.1"], "alloc-2") for name in names_of(2)] + [
        replace(name, ["127.0.0.1"], "alloc-3") for name in names_of(3)]
    result = run_batch(monkeypatch, [zone_read(*kept, *stale, rrset("www.z.test.", ["1.2.3.4"])),
                                     Call("PATCH", ZONE_URL, status=204, body={"rrsets": patch})],
                       [{"organization": org(n), "owner": "alloc-%d" % n, "state": "present"} for n in (1, 2, 3)])
    assert result["changed_organizations"] == [org(2), org(3)] and result["failed_organizations"] == {}
    assert result["diff"]["before"] == {names_of(3)[0]: {"ttl": 60, "records": ["10.0.0.9"], "owner": "alloc-3"}}


def test_each_refusal_in_a_batch_fails_only_its_own_organization(monkeypatch):
    foreign = [rrset(name, ["127.0.0.1"], "someone-else") for name in names_of(1)]
    delete = [{"name": name, "type": "A", "changetype": "DELETE"} for name in names_of(2)]
    with pytest.raises(PdnsError) as failed:
        run_batch(monkeypatch, [zone_read(*foreign, *[rrset(name, ["127.0.0.1"], "alloc-2") for name in names_of(2)]),
                                Call("PATCH", ZONE_URL, status=204, body={"rrsets": delete})],
                  [{"organization": org(1), "owner": "alloc-1", "state": "absent"},
                   {"organization": org(2), "owner": "alloc-2", "state": "absent"},
                   {"organization": "not-a-uuid", "owner": "x", "state": "absent"}])
    details = failed.value.details
    assert details["changed_organizations"] == [org(2)] and details["outcome"] == "not_applied"
    assert "owned by someone-else" in details["failed_organizations"][org(1)]
    assert "is not a UUID" in details["failed_organizations"]["not-a-uuid"]
    assert "2 of 3 organizations' record sets in zone z.test. were not changed" in failed.value.msg


def test_a_batch_is_written_in_bounded_patches_and_a_timeout_is_an_unknown_outcome(monkeypatch):
    monkeypatch.setattr(_pdns_rrset, "BATCH_ORGANIZATIONS", 2)
    items = [{"organization": org(n), "owner": "alloc-%d" % n, "state": "present"} for n in range(1, 6)]

    def body(numbers):
        return {"rrsets": [replace(name, ["127.0.0.1"], "alloc-%d" % n) for n in numbers for name in names_of(n)]}

    with pytest.raises(PdnsError) as failed:
        run_batch(monkeypatch, [zone_read(), Call("PATCH", ZONE_URL, status=204, body=body([1, 2])),
                                Call("PATCH", ZONE_URL, body=body([3, 4]), error=socket.timeout("timed out")),
                                Call("PATCH", ZONE_URL, status=204, body=body([5]))], items)
    details = failed.value.details
    assert details["changed_organizations"] == [org(1), org(2), org(5)] and details["outcome"] == "unknown"
    assert all("whether it was written is unknown" in details["failed_organizations"][org(n)] for n in (3, 4))


def test_a_batch_in_check_mode_only_reads(monkeypatch):
    result = run_batch(monkeypatch, [zone_read()], [{"organization": org(1), "owner": "a", "state": "present"}], True)
    assert result["changed"] and result["changed_organizations"] == [org(1)]
