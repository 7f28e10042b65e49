from ansible_collections.demiurge.gateway.plugins.filter.failure_cause import failed_items, failure_cause


def test_a_loop_names_each_failed_host_and_its_cause():
    result = {"failed": True, "msg": "One or more items failed", "results": [
        {"item": "edge-1", "changed": True},
        {"item": "edge-2", "failed": True, "msg": "nginx rejected the route"},
        {"item": "edge-3", "unreachable": True, "msg": "ssh: connection refused"}]}
    assert failure_cause(result, "route") == ("step 'route' on edge-2: nginx rejected the route; "
                                              "step 'route' on edge-3: host unreachable: ssh: connection refused")


def test_a_plain_task_names_the_controller():
    assert failure_cause({"failed": True, "msg": "Pool exhausted"}, "claim") == "step 'claim' on localhost: Pool exhausted"


def test_failed_items_include_loops_run_with_failed_when_false():
    results = {"results": [{"item": {"organization": "org-a"}, "failed": False, "changed": False},
                           {"item": {"organization": "org-b"}, "failed": False, "error": "SnapshotError", "msg": "disk full"}]}
    assert failed_items(results, "item.organization") == ["org-b: disk full"]


def test_failed_items_name_a_pair_by_its_path():
    results = {"results": [{"item": ["edge-1", {"organization": "org-c"}], "error": "EdgeError", "msg": "nginx -t failed"}]}
    assert failed_items(results, "item.1.organization") == ["org-c: nginx -t failed"]
    assert failed_items({"results": [{"item": "edge-2", "failed": True, "msg": "down"}]}) == ["edge-2: down"]


def test_repair_events_count_changed_items_only():
    from ansible_collections.demiurge.gateway.plugins.filter.failure_cause import repair_events
    results = {"results": [{"changed": True, "item": ["edge-1", {"organization": "o1"}]},
                           {"changed": False, "item": ["edge-1", {"organization": "o2"}]},
                           {"changed": True, "failed": True, "item": ["edge-2", {"organization": "o3"}]}]}
    assert repair_events(results, "route_restored", "item.1.organization", "item.0") == [
        {"kind": "reconcile.repaired", "step": "route_restored", "organization": "o1", "host": "edge-1"}]
    assert repair_events({}, "dns_restored", "item.organization") == []


def test_repair_events_of_batches_count_each_changed_organization_failed_or_not():
    from ansible_collections.demiurge.gateway.plugins.filter.failure_cause import repair_events
    results = {"results": [{"changed": True, "item": "edge-1", "changed_organizations": ["o1", "o2"]},
                           {"changed": True, "failed": True, "item": "edge-2", "changed_organizations": ["o3"],
                            "failed_organizations": {"o4": "owned by someone else"}},
                           {"changed": False, "item": "edge-3", "changed_organizations": []},
                           {"changed": True, "item": "edge-4", "changed_organizations": [], "made_live": True}]}
    assert [(event["host"], event["step"], event.get("organization")) for event in repair_events(results, "route_restored", host="item")] == [
        ("edge-1", "route_restored", "o1"), ("edge-1", "route_restored", "o2"), ("edge-2", "route_restored", "o3"),
        ("edge-4", "routes_made_live", None)]


def test_a_delegated_task_names_the_host_it_failed_on():
    result = {"failed": True, "msg": "Host storage1 did not answer on its connection", "failed_on": "storage1"}
    assert failure_cause(result, "restore") == "step 'restore' on storage1: Host storage1 did not answer on its connection"


def test_failed_items_of_batches_name_each_organization():
    from ansible_collections.demiurge.gateway.plugins.filter.failure_cause import failed_items
    results = {"results": [{"item": "edge-1", "failed": True, "msg": "2 of 9 routes were not changed",
                            "failed_organizations": {"o2": "owned by x", "o1": "nginx rejected it"}},
                           {"item": "edge-2", "failed": True, "msg": "nginx under /e2 is not running"}]}
    assert failed_items(results) == ["o1: nginx rejected it", "o2: owned by x", "edge-2: nginx under /e2 is not running"]
