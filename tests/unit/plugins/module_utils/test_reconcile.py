"""Reconcile's decision (plan) from the zone listing, the route listings and the live allocations."""

import random
import uuid

from ansible_collections.demiurge.gateway.plugins.module_utils._reconcile import plan

ZONE = "test.demiurge.test."
EDGES = ["edge1", "edge2"]
ADDRESSES = ["127.0.0.1", "127.0.0.2"]


def allocation(status="active", upstream="127.0.0.1:16501"):
    return {"allocation_id": str(uuid.uuid4()), "organization": str(uuid.uuid4()), "status": status,
            "nginx_upstream": upstream}


def published(alloc, records=None, ttl=60, owner=None):
    """The zone listing entry allocate.yml leaves for an allocation."""
    owner = alloc["allocation_id"] if owner is None else owner
    label = "org-" + alloc["organization"]
    names = [label + "." + ZONE, "*." + label + "." + ZONE]
    return {"organization": alloc["organization"], "owner": owner, "names": names,
            "rrsets": [{"name": name, "type": "A", "ttl": ttl, "records": sorted(records or ADDRESSES), "owner": owner}
                       for name in names]}


def routed(alloc, upstream=None, owner=None):
    return {"organization": alloc["organization"], "owner": alloc["allocation_id"] if owner is None else owner,
            "host": "org-%s.%s" % (alloc["organization"], ZONE[:-1]), "upstream": upstream or alloc["nginx_upstream"]}


def pairs(per_edge):
    return [(edge, route["organization"]) for edge in sorted(per_edge) for route in per_edge[edge]]


def everything_published(allocations):
    active = [a for a in allocations if a["status"] == "active"]
    return [published(a) for a in active], {edge: [routed(a) for a in active] for edge in EDGES}


def test_nothing_differs_nothing_to_do():
    allocations = [allocation() for dummy in range(5)] + [allocation("allocating")]
    dns, routes = everything_published(allocations)
    assert plan(allocations, ZONE, ADDRESSES, dns, routes) == {
        "dns_restore": [], "routes_restore": {"edge1": [], "edge2": []}, "dns_orphans": [],
        "route_orphans": {"edge1": [], "edge2": []}}


def test_missing_and_wrong_names_and_routes_are_restored_only_where_they_differ():
    good, missing, wrong_records, wrong_ttl, foreign, half = (allocation() for dummy in range(6))
    dns = [published(good), published(wrong_records, records=["10.0.0.9"]), published(wrong_ttl, ttl=300),
           published(foreign, owner="someone-else")]
    partial = published(half)
    partial["rrsets"] = partial["rrsets"][:1]  # the wildcard is missing
    dns.append(partial)
    routes = {"edge1": [routed(good), routed(missing), routed(wrong_records), routed(wrong_ttl), routed(foreign),
                        routed(half)],
              "edge2": [routed(good), routed(wrong_records, upstream="127.0.0.1:1"), routed(wrong_ttl), routed(foreign),
                        routed(half, owner="other")]}
    decision = plan([good, missing, wrong_records, wrong_ttl, foreign, half], ZONE, ADDRESSES, dns, routes)
    assert [a["organization"] for a in decision["dns_restore"]] == [
        a["organization"] for a in (missing, wrong_records, wrong_ttl, foreign, half)]
    assert pairs(decision["routes_restore"]) == [
        ("edge2", missing["organization"]), ("edge2", wrong_records["organization"]), ("edge2", half["organization"])]
    assert decision["dns_restore"][0] == {"organization": missing["organization"], "owner": missing["allocation_id"],
                                          "state": "present"}
    assert decision["routes_restore"]["edge2"][0] == {"organization": missing["organization"], "state": "present",
                                                      "upstream": "127.0.0.1:16501", "owner": missing["allocation_id"]}
    # An owner no live allocation has is an orphan as well as a candidate: the restore is refused
    # (pdns_rrset and edge_route keep their ownership checks), the removal takes it away, and the
    # next reconcile restores it.
    assert decision["dns_orphans"] == [{"organization": foreign["organization"], "owner": "someone-else",
                                       "state": "absent"}]
    assert pairs(decision["route_orphans"]) == [("edge2", half["organization"])]


def test_orphans_are_what_no_live_allocation_owns_and_ownerless_entries_are_left_alone():
    live, released = allocation(), allocation()
    allocating = allocation("allocating")  # in progress: its names are not an orphan
    hand_made = published(allocation(), owner=None)
    hand_made["owner"] = None
    dns = [published(live), published(released), published(allocating), hand_made]
    routes = {"edge1": [routed(live), routed(released), routed(allocating), dict(routed(allocation()), owner=None)]}
    decision = plan([live, allocating], ZONE, ADDRESSES, dns, routes)
    assert decision["dns_orphans"] == [{"organization": released["organization"], "owner": released["allocation_id"],
                                       "state": "absent"}]
    assert decision["route_orphans"] == {"edge1": [{"organization": released["organization"], "state": "absent",
                                                    "owner": released["allocation_id"]}]}
    assert decision["dns_restore"] == [] and pairs(decision["routes_restore"]) == []


def test_addresses_and_upstreams_are_compared_in_their_written_form():
    alloc = allocation(upstream="[::1]:16501")
    dns = [published(alloc, records=["127.0.0.1"])]
    routes = {"edge1": [routed(alloc, upstream="[::1]:16501")]}
    assert plan([alloc], ZONE.upper().rstrip("."), [" 127.0.0.1 ", "127.0.0.1"], dns, routes)["dns_restore"] == []
    assert pairs(plan([alloc], ZONE, ["127.0.0.1"], dns, routes)["routes_restore"]) == []


def test_property_every_difference_is_a_candidate_and_nothing_else_is():
    """Random drift over many allocations: the plan names exactly the drifted ones."""
    rng = random.Random(14)
    for dummy in range(50):
        allocations = [allocation(rng.choice(["active", "active", "allocating", "releasing"])) for dummy in range(40)]
        dns, routes = everything_published(allocations)
        expect_dns, expect_routes = set(), set()
        for entry in list(dns):
            if rng.random() < 0.2:
                dns.remove(entry)
                expect_dns.add(entry["organization"])
            elif rng.random() < 0.1:
                entry["rrsets"][rng.randrange(2)]["records"] = ["10.9.9.9"]
                expect_dns.add(entry["organization"])
        for edge in EDGES:
            for route in list(routes[edge]):
                if rng.random() < 0.2:
                    routes[edge].remove(route)
                    expect_routes.add((edge, route["organization"]))
                elif rng.random() < 0.1:
                    route["upstream"] = "127.0.0.1:1"
                    expect_routes.add((edge, route["organization"]))
        orphan = allocation()
        dns.append(published(orphan))
        routes["edge2"].append(routed(orphan))
        decision = plan(allocations, ZONE, ADDRESSES, dns, routes)
        assert {a["organization"] for a in decision["dns_restore"]} == expect_dns
        assert set(pairs(decision["routes_restore"])) == expect_routes
        assert decision["dns_orphans"] == [
            {"organization": orphan["organization"], "owner": orphan["allocation_id"], "state": "absent"}]
        assert pairs(decision["route_orphans"]) == [("edge2", orphan["organization"])]
