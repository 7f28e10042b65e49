"""The allocation playbooks' filters: what a batch step takes, and which organizations it failed."""

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.demiurge.gateway.plugins.filter.allocation import allocation_result, batch_entries, failed_organizations

A = {"allocation_id": "a-1", "organization": "o-1", "gateway_name": "gw-001", "nginx_upstream": "127.0.0.1:15501",
     "api_url": "http://127.0.0.1:15501", "gateway_metadata": {"data_dir": "/d/gw-001"}}
B = {"allocation_id": "a-2", "organization": "o-2", "gateway_name": "gw-002", "nginx_upstream": "127.0.0.1:15502",
     "api_url": "http://127.0.0.1:15502", "gateway_metadata": {}}
GOING = {"o-1": A, "o-2": B}


def test_each_step_gets_its_own_entries():
    assert batch_entries(GOING, "journal") == {"o-1": "a-1", "o-2": "a-2"}
    assert batch_entries(GOING, "dns") == [{"organization": "o-1", "owner": "a-1"}, {"organization": "o-2", "owner": "a-2"}]
    assert batch_entries(GOING, "route")[1] == {"organization": "o-2", "owner": "a-2", "upstream": "127.0.0.1:15502"}
    assert batch_entries(GOING, "handshake")[0] == {"organization": "o-1", "allocation_id": "a-1", "api_url": "http://127.0.0.1:15501"}
    with pytest.raises(AnsibleFilterError, match="dns, route, handshake or journal"):
        batch_entries(GOING, "restore")


def test_the_published_result_names_the_host_and_the_gateway():
    assert allocation_result(A, "dev-001.demiurge.test.") == {
        "organization": "o-1", "host_name": "org-o-1.dev-001.demiurge.test", "allocation_id": "a-1", "gateway": "gw-001",
        "nginx_upstream": "127.0.0.1:15501", "gateway_metadata": {"data_dir": "/d/gw-001"}}


def test_a_call_for_many_fails_each_organization_it_names_even_under_failed_when_false():
    result = {"failed": False, "error": "PdnsError", "msg": "1 of 2 ...", "failed_organizations": {"o-2": "owned by a-9"}}
    assert failed_organizations(result, "dns", GOING) == {"o-2": "step 'dns' on localhost: owned by a-9"}
    assert failed_organizations({"changed": True, "failed_organizations": {}}, "dns", GOING) == {}


def test_a_call_that_failed_as_a_whole_failed_each_organization_it_was_given():
    result = {"failed": False, "error": "EdgeError", "msg": "nginx under /e is not running", "failed_on": "edge2"}
    assert failed_organizations(result, "route", ["o-1"]) == {"o-1": "step 'route' on edge2: nginx under /e is not running"}


def test_a_loop_of_calls_names_each_edge_and_a_loop_of_organizations_each_one():
    per_edge = {"results": [{"item": "edge1", "changed": True, "failed_organizations": {}},
                            {"item": "edge2", "failed": False, "error": "EdgeError", "msg": "refused",
                             "failed_organizations": {"o-1": "nginx -t: bad upstream"}}]}
    assert failed_organizations(per_edge, "route", GOING) == {"o-1": "step 'route' on edge2: nginx -t: bad upstream"}
    per_organization = {"results": [{"item": A, "changed": True},
                                    {"item": B, "failed": False, "error": "GatewayApiError", "msg": "handshake refused"},
                                    {"item": B, "skipped": True}]}
    assert failed_organizations(per_organization, "handshake", GOING) == {"o-2": "step 'handshake' on localhost: handshake refused"}


def test_only_the_organizations_asked_about_and_nothing_for_a_skipped_step():
    result = {"failed_organizations": {"o-1": "x", "not-a-uuid": "not a UUID"}, "error": "GatewayError", "msg": "m"}
    assert failed_organizations(result, "claim", ["not-a-uuid"]) == {"not-a-uuid": "step 'claim' on localhost: not a UUID"}
    assert failed_organizations({"skipped": True, "changed": False}, "dns", GOING) == {}
    assert failed_organizations(None, "dns", GOING) == {}
