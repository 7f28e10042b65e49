"""Reconcile at scale, on the real PowerDNS and nginx: thousands of organizations with every kind of
drift at once (names and routes missing, wrong and orphaned), one run, exactly the live set left."""

import os
import random
import uuid

import pytest

from ansible_collections.demiurge.gateway.plugins.module_utils._edge_route import list_routes
from ansible_collections.demiurge.gateway.plugins.module_utils._pdns_client import PdnsClient
from ansible_collections.demiurge.gateway.plugins.module_utils._pdns_rrset import list_organizations

import invariants
from lifecycle import DOMAIN, plain, run
from population import Population

SIZE = 2000
UPSTREAM = "127.0.0.1:%d" % (int(os.environ.get("DEMIURGE_TEST_PORT_BASE", "16000")) + 499)
EDGE_ROOT = os.environ.get("DEMIURGE_TEST_EDGE_ROOT")


def pdns():
    return PdnsClient(os.environ["DEMIURGE_TEST_PDNS_API_URL"], os.environ["DEMIURGE_TEST_PDNS_API_KEY"], timeout=60)


@pytest.fixture
def population():
    crowd = Population(invariants.db, pdns(), EDGE_ROOT, DOMAIN, UPSTREAM,
                       listen_url="http://127.0.0.1:%s" % os.environ.get("DEMIURGE_TEST_HTTP_PORT"))
    crowd.remove()
    yield crowd
    crowd.remove()


def repairs_since(mark):
    with invariants.db() as conn:
        return dict(conn.execute("SELECT step, count(*) FROM gateway_events WHERE id > %s AND kind = 'reconcile.repaired' "
                                 "GROUP BY step", (mark,)).fetchall())


def last_event():
    with invariants.db() as conn:
        return conn.execute("SELECT coalesce(max(id), 0) FROM gateway_events").fetchone()[0]


def test_one_reconcile_repairs_every_kind_of_drift_across_thousands_of_organizations(invariants_hold, population):
    members = population.create(SIZE)
    rng = random.Random(14)
    drifted = rng.sample(members, 900)
    dns_missing, dns_wrong, routes_missing, routes_wrong, both = (drifted[:300], drifted[300:400], drifted[400:700],
                                                                  drifted[700:800], drifted[800:])
    population.publish(dns_missing + both, present=False)
    population.publish(dns_wrong, records=["10.9.9.9"])
    population.route(routes_missing + both, present=False)
    population.route(routes_wrong, upstream="127.0.0.1:1")
    # Owned by allocations that no longer exist: what a run killed after its release left behind.
    orphans = [(str(uuid.uuid4()), str(uuid.uuid4())) for dummy in range(200)]
    population.publish(orphans)
    population.route(orphans)
    mark = last_event()

    rc, dummy, out = run("reconcile")
    assert rc == 0, plain(out)[-3000:]

    wanted = dict(members)
    names = {entry["organization"]: entry for entry in list_organizations(pdns(), DOMAIN + ".")}
    routes = {route["organization"]: route for route in list_routes(EDGE_ROOT)}
    for organization, allocation in members:
        entry = names.get(organization)
        assert entry is not None and [(r["ttl"], r["records"], r["owner"]) for r in entry["rrsets"]] == [
            (60, ["127.0.0.1"], allocation)] * 2, (organization, entry)
        route = routes.get(organization)
        assert route is not None and (route["owner"], route["upstream"]) == (allocation, UPSTREAM), (organization, route)
    assert not {o for o, dummy in orphans} & (set(names) | set(routes)), "every orphan is gone"
    assert not set(names) - set(wanted) - live_organizations(), "no name beyond the live allocations"
    assert not set(routes) - set(wanted) - live_organizations(), "no route beyond the live allocations"
    for organization, allocation in rng.sample(routes_missing + routes_wrong + both, 50):
        assert invariants.served_upstream("org-%s.%s" % (organization, DOMAIN)) == UPSTREAM
    assert repairs_since(mark) == {"dns_restored": 500, "route_restored": 500, "dns_orphan_removed": 200,
                                   "route_orphan_removed": 200}

    mark = last_event()
    rc, dummy, out = run("reconcile")
    assert rc == 0 and repairs_since(mark) == {}, "a second reconcile finds nothing to repair"


def live_organizations():
    with invariants.db() as conn:
        return {str(row[0]) for row in conn.execute("SELECT organization_id FROM organizations_gateways WHERE stopped_at IS NULL")}


def test_one_organization_that_cannot_be_repaired_fails_alone_in_the_batch(invariants_hold, population):
    members = population.create(50)
    population.publish(members[:10], present=False)
    population.route(members[:10], present=False)
    # The first organization's names carry another live allocation as their owner: not an orphan,
    # and not reconcile's to take over.
    (taken, dummy), (dummy, other_allocation) = members[0], members[1]
    population.publish([(taken, other_allocation)])
    rc, dummy, out = run("reconcile")
    flat = plain(out)
    assert rc != 0 and "Reconcile repaired everything else but failed for 1 item(s)" in flat, flat[-3000:]
    assert "%s: " % taken in flat and "owned by %s" % other_allocation in flat
    routes = {route["organization"]: route for route in list_routes(EDGE_ROOT)}
    names = {entry["organization"]: entry for entry in list_organizations(pdns(), DOMAIN + ".")}
    assert names[taken]["owner"] == other_allocation
    for organization, allocation in members[1:10]:
        assert names[organization]["owner"] == allocation and routes[organization]["owner"] == allocation
    assert routes[taken]["owner"] == members[0][1], "its route was restored all the same"
