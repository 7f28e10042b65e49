# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

Ensure a PowerDNS zone exists (or not) with the wanted kind and name servers.
"""

from __future__ import annotations

from ansible_collections.demiurge.gateway.plugins.module_utils._dns_names import canonical
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import PdnsNotFoundError
from ansible_collections.demiurge.gateway.plugins.module_utils._module import ModuleDef
from ansible_collections.demiurge.gateway.plugins.module_utils._pdns_client import PdnsClient, pdns_argument_spec


def read_zone(client, zone):
    """{'kind', 'nameservers', 'serial'} of zone, or None when PowerDNS does not have it."""
    try:
        data = client.request("GET", client.zone_path(zone))
    except PdnsNotFoundError:
        return None
    nameservers = sorted(
        record["content"]
        for rrset in data.get("rrsets", ())
        if rrset["type"] == "NS" and rrset["name"] == zone
        for record in rrset["records"]
    )
    return {"kind": data["kind"], "nameservers": nameservers, "serial": data.get("serial")}


def ensure_zone(client, params, check_mode):
    zone = canonical(params["name"], "zone")
    nameservers = sorted(canonical(ns, "name server") for ns in params["nameservers"] or ["ns1." + zone])
    before = read_zone(client, zone)
    after = None
    if params["state"] == "present":
        after = {"kind": params["kind"], "nameservers": nameservers}
    current = None if before is None else {"kind": before["kind"], "nameservers": before["nameservers"]}
    changed = current != after
    if changed and not check_mode:
        if after is None:
            client.request("DELETE", client.zone_path(zone))
        elif before is None:
            client.request("POST", client.server_path("/zones"),
                           {"name": zone, "kind": params["kind"], "nameservers": nameservers, "soa_edit_api": "DEFAULT"})
        else:
            if before["kind"] != params["kind"]:
                client.request("PUT", client.zone_path(zone), {"kind": params["kind"]})
            if before["nameservers"] != nameservers:
                client.request("PATCH", client.zone_path(zone), {"rrsets": [{
                    "name": zone, "type": "NS", "ttl": params["ns_ttl"], "changetype": "REPLACE",
                    "records": [{"content": ns, "disabled": False} for ns in nameservers],
                }]})
        # PowerDNS caches negative answers for names queried before the zone existed (REFUSED for
        # about 20 s); flushing makes the change visible over DNS at once.
        client.flush_cache(zone)
    return {"changed": changed, "zone": zone, "diff": {"before": current or {}, "after": after or {}}}


def zone_argument_spec():
    spec = pdns_argument_spec()
    spec.update(
        name={"type": "str", "required": True},
        state={"type": "str", "default": "present", "choices": ["present", "absent"]},
        kind={"type": "str", "default": "Native", "choices": ["Native", "Master", "Slave"]},
        nameservers={"type": "list", "elements": "str", "default": []},
        ns_ttl={"type": "int", "default": 3600},
    )
    return spec


PDNS_ZONE = ModuleDef(zone_argument_spec, lambda call: ensure_zone(PdnsClient.from_params(call.params), call.params, call.check_mode))
