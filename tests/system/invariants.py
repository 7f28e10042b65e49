"""The life cycle's promises, checked against the real services after a test.

check(settled=True) returns every violation found (an empty list when all hold):
- no organization's data on a gateway that is not allocated to it: a gateway without a live
  allocation holds no file in its data directory, no session in its /tmp (project-config.json, the
  organization's token included, which the real gateway re-enters on start) and no organization
  in memory (the stand-in's /standin/state), nor a restore's staging or a snapshot's note beside
  its data directory; and a gateway holds no other organization than its
  allocation's, in its /tmp or in memory;
- settled (after reconcile): no gateway outside ready, allocated, quarantined or retired, and no
  allocation left allocating or releasing;
- DNS records (listed through the API, and each org name asked over the wire) and the routes on the
  edge equal the live allocations exactly, with their owners and upstreams, and the stack's live
  nginx serves each active organization's route (what is on disk is also live);
- no stored snapshot lost a project that an older snapshot of the organization held.
"""

import http.client
import json
import os
import subprocess
import urllib.request
from pathlib import Path

import psycopg

from ansible_collections.demiurge.gateway.plugins.module_utils._edge_route import list_routes
from ansible_collections.demiurge.gateway.plugins.module_utils._paths import state_path
from ansible_collections.demiurge.gateway.plugins.module_utils._pdns_client import PdnsClient
from ansible_collections.demiurge.gateway.plugins.module_utils._pdns_rrset import list_organizations
from ansible_collections.demiurge.gateway.plugins.module_utils._snapshot import list_snapshots, written_beside

SETTLED_GATEWAY = {"ready", "allocated", "quarantined", "retired"}
# Configuration roots of every edge whose routes must match the live allocations; a test that adds
# an edge host adds its root here.
EDGE_ROOTS = [os.environ.get("DEMIURGE_TEST_EDGE_ROOT")]


def _env(name):
    return os.environ["DEMIURGE_TEST_" + name]


def db():
    return psycopg.connect(host="127.0.0.1", port=int(_env("PG_PORT")), user="demiurge", password=_env("PG_PASSWORD"),
                           dbname="demiurge", autocommit=True)


def _files(root):
    root = Path(root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()) if root.is_dir() else []


def _standin_state(api_url):
    try:
        with urllib.request.urlopen(api_url + "/standin/state", timeout=2) as response:
            return json.loads(response.read())
    except OSError:
        return None  # down or stopped: it holds nothing it could serve


def _dig(name):
    out = subprocess.run(["dig", "+norec", "+time=2", "+tries=1", "-p", _env("DNS_PORT"), "@127.0.0.1", name, "A"],
                         capture_output=True, text=True, check=False).stdout
    return "status: NOERROR" in out and "ANSWER: 0" not in out


def served_upstream(host):
    """The upstream the stack's live nginx maps host to ('' for none), from its response header."""
    conn = http.client.HTTPConnection("127.0.0.1", int(_env("HTTP_PORT")), timeout=5)
    try:
        conn.request("HEAD", "/.well-known/demiurge-route", headers={"Host": host})
        return conn.getresponse().getheader("X-Demiurge-Upstream") or ""
    finally:
        conn.close()


def session_of(tmp_dir):
    """The organization whose session a gateway's /tmp holds (None for none; '?' for a file that
    does not parse, which still holds whatever it holds)."""
    try:
        with open(os.path.join(tmp_dir, "project-config.json")) as handle:
            return str(json.load(handle).get("organization_id") or "?")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError):
        return "?"


def _gateways_and_allocations():
    with db() as conn:
        gateways = conn.execute("SELECT id, name, status, api_url, nginx_upstream, metadata FROM gateways").fetchall()
        live = conn.execute("SELECT id, organization_id, gateway_id, status FROM organizations_gateways "
                            "WHERE stopped_at IS NULL").fetchall()
    return gateways, {str(row[2]): row for row in live}


def _gateway_violations(gateways, by_gateway):
    found = []
    for gateway_id, name, status, api_url, upstream, metadata in gateways:
        if status == "retired":
            continue  # out of service for good; its name, and so its directories, may be a new gateway's
        allocation = by_gateway.get(str(gateway_id))
        files = _files(metadata.get("data_dir")) if metadata.get("data_dir") else []
        memory = _standin_state(api_url) if metadata.get("kind") == "stand-in" else None
        holds = (memory or {}).get("organization")
        session = session_of(metadata["tmp_dir"]) if metadata.get("tmp_dir") else None
        if allocation is None:
            if files:
                found.append("gateway %s (%s, no allocation) holds files %s" % (name, status, files[:3]))
            if holds:
                found.append("gateway %s (%s, no allocation) serves organization %s from memory" % (name, status, holds))
            if session:
                found.append("gateway %s (%s, no allocation) holds the session of organization %s in its /tmp"
                             % (name, status, session))
            beside = [path for path in written_beside(metadata["data_dir"]) if os.path.lexists(path)] \
                if metadata.get("data_dir") else []
            if beside:
                found.append("gateway %s (%s, no allocation) has %s beside its data directory" % (name, status, beside))
            continue
        if holds and holds != str(allocation[1]):
            found.append("gateway %s, allocated to %s, serves organization %s" % (name, allocation[1], holds))
        if session and session != str(allocation[1]):
            found.append("gateway %s, allocated to %s, holds the session of organization %s in its /tmp"
                         % (name, allocation[1], session))
    return found


def _settled_violations(gateways, live):
    found = ["gateway %s is %s after reconcile" % (name, status)
             for dummy, name, status, dummy2, dummy3, dummy4 in gateways if status not in SETTLED_GATEWAY]
    found += ["allocation of %s is still %s after reconcile" % (row[1], row[3])
              for row in live.values() if row[3] != "active"]
    return found


def _published_violations(gateways, live, settled):
    found = []
    domain = _env("DOMAIN")
    upstream_of = {str(row[0]): row[4] for row in gateways}
    active = {str(row[1]): (str(row[0]), upstream_of[str(row[2])]) for row in live.values() if row[3] == "active"}
    in_progress = {str(row[1]): str(row[0]) for row in live.values() if row[3] != "active"}
    client = PdnsClient(_env("PDNS_API_URL"), _env("PDNS_API_KEY"))
    records = {entry["organization"]: entry["owner"] for entry in list_organizations(client, domain + ".")}
    for root in EDGE_ROOTS:
        found += _route_violations(root, active, in_progress, settled)
    for organization, (allocation_id, upstream) in active.items():
        host = "org-%s.%s" % (organization, domain)
        if served_upstream(host) != upstream:
            found.append("the live nginx serves %s with %r, not %s" % (host, served_upstream(host), upstream))
        if records.get(organization) != allocation_id:
            found.append("active organization %s has DNS owner %s, not %s" % (organization, records.get(organization), allocation_id))
        elif not _dig("org-%s.%s" % (organization, domain)):
            found.append("active organization %s does not resolve over DNS" % organization)
    for organization, owner in records.items():
        if organization not in active and (settled or in_progress.get(organization) != owner):
            found.append("organization %s has DNS records (owner %s) without a live allocation" % (organization, owner))
    return found


def _route_violations(root, active, in_progress, settled):
    found = []
    routes = {route["organization"]: route for route in list_routes(root)}
    for organization, (allocation_id, upstream) in active.items():
        route = routes.get(organization)
        if route is None or route["owner"] != allocation_id or route["upstream"] != upstream:
            found.append("active organization %s has route %s on %s, not %s to %s"
                         % (organization, route, root, allocation_id, upstream))
    for organization, route in routes.items():
        if organization not in active and (settled or in_progress.get(organization) != route["owner"]):
            found.append("organization %s has a route on %s (owner %s) without a live allocation"
                         % (organization, root, route["owner"]))
    return found


def _snapshot_violations():
    found = []
    storage = Path(state_path(_env("ENV"), "org-data"))
    for org_dir in sorted(storage.iterdir()) if storage.is_dir() else ():
        history = [m for m in reversed(list_snapshots(str(storage), org_dir.name)) if m["intact"]]
        seen = set()
        for manifest in history:
            lost = seen - set(manifest.get("projects", []))
            if lost:
                found.append("snapshot %s of %s lost projects %s" % (manifest["id"], org_dir.name, sorted(lost)))
            seen |= set(manifest.get("projects", []))
    return found


def check(settled=True):
    gateways, live = _gateways_and_allocations()
    found = _gateway_violations(gateways, live)
    if settled:
        found += _settled_violations(gateways, live)
    found += _published_violations(gateways, live, settled)
    return found + _snapshot_violations()
