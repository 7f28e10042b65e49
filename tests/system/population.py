"""A synthetic population of organizations, created and removed in bulk, as allocate.yml leaves it.

For each organization: a gateway row (status allocated, named <prefix>NNNNN, never started:
reconcile talks to no gateway of a healthy allocation), an active allocation, its two record sets
in the zone and its route on the edge. Thousands are made in seconds: one INSERT, one PATCH per
1,000 organizations (pdns_rrset's batch), one nginx reload (edge_route's batch). Used by the
system tests of reconcile at scale and by benchmarks/reconcile.py.
"""

import subprocess

from ansible_collections.demiurge.gateway.plugins.module_utils._edge_route import change_routes
from ansible_collections.demiurge.gateway.plugins.module_utils._pdns_rrset import ensure_organizations

EDGE_ADDRESSES = ["127.0.0.1"]


def run_command(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


class Population:
    def __init__(self, db, pdns, edge_root, zone, upstream, listen_url=None, prefix="syn-"):
        self.db, self.pdns, self.edge_root, self.zone = db, pdns, edge_root, zone.rstrip(".")
        self.upstream, self.listen_url, self.prefix = upstream, listen_url, prefix

    def create(self, count):
        """count organizations; returns [(organization, allocation id)]."""
        with self.db() as conn:
            rows = conn.execute(
                "WITH g AS (INSERT INTO gateways (name, api_url, nginx_upstream, status, metadata) "
                "  SELECT %s || lpad(n::text, 5, '0'), 'http://' || %s, %s, 'allocated', '{\"kind\": \"synthetic\"}' "
                "  FROM generate_series(1, %s) n RETURNING id) "
                "INSERT INTO organizations_gateways (organization_id, gateway_id, status, activated_at) "
                "SELECT gen_random_uuid(), id, 'active', now() FROM g RETURNING organization_id, id",
                (self.prefix, self.upstream, self.upstream, count)).fetchall()
        members = [(str(organization), str(allocation)) for organization, allocation in rows]
        self.publish(members)
        self.route(members)
        return members

    def members(self):
        with self.db() as conn:
            return [(str(o), str(a)) for o, a in conn.execute(
                "SELECT og.organization_id, og.id FROM organizations_gateways og JOIN gateways g ON g.id = og.gateway_id "
                "WHERE g.name LIKE %s AND og.stopped_at IS NULL", (self.prefix + "%",)).fetchall()]

    def publish(self, members, present=True, records=None, force=False):
        params = {"zone": self.zone, "type": "A", "include_subdomains": True, "records": records or EDGE_ADDRESSES,
                  "ttl": 60, "force": force, "organizations": [
                      {"organization": o, "owner": a, "state": "present" if present else "absent"} for o, a in members]}
        ensure_organizations(self.pdns, params, False)

    def route(self, members, present=True, upstream=None, force=False):
        params = {"config_root": self.edge_root, "config_file": None, "domain": self.zone, "force": force,
                  "listen_url": self.listen_url, "nginx_binary": "/usr/sbin/nginx", "reload_timeout": 10, "lock_timeout": 60,
                  "reach_path": None, "reach_timeout": 5}
        items = [{"organization": o, "owner": a, "upstream": upstream or self.upstream, "state": "present" if present else "absent"}
                 for o, a in members]
        done, refused, dummy = change_routes(params, items, False, run_command, print)
        if refused:
            raise AssertionError("routes refused: %s" % refused)

    def remove(self):
        """Every organization of the population, wherever an interrupted run left it; returns how many."""
        members = self.members()
        if members:
            self.publish(members, present=False, force=True)
            self.route(members, present=False, force=True)
        with self.db() as conn:
            conn.execute("DELETE FROM allocation_steps WHERE allocation_id IN (SELECT og.id FROM organizations_gateways og "
                         "JOIN gateways g ON g.id = og.gateway_id WHERE g.name LIKE %s)", (self.prefix + "%",))
            conn.execute("DELETE FROM organizations_gateways WHERE gateway_id IN (SELECT id FROM gateways WHERE name LIKE %s)",
                         (self.prefix + "%",))
            conn.execute("DELETE FROM gateways WHERE name LIKE %s", (self.prefix + "%",))
        return len(members)
