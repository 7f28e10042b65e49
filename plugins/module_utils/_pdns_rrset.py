# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

Organization and plain record sets in PowerDNS: read one RRset at a time,
compare, and write every change of one call in a single PATCH.
"""

from __future__ import annotations

import ipaddress

from ansible_collections.demiurge.gateway.plugins.module_utils._dns_names import (
    ORG_LABEL,
    canonical,
    organization_label,
    require_in_zone,
)
from ansible_collections.demiurge.gateway.plugins.module_utils._journal import journal_argument_spec
from ansible_collections.demiurge.gateway.plugins.module_utils._module import ModuleDef
from ansible_collections.demiurge.gateway.plugins.module_utils._pdns_client import PdnsClient, pdns_argument_spec
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import (
    InvalidInputError,
    PdnsError,
    PdnsNotFoundError,
)

OWNER_ACCOUNT = "demiurge"
OWNER_PREFIX = "owner="
WILDCARD_OWNER = "wildcard"


def normalize_content(rtype, content):
    """Content in the form PowerDNS returns it, so comparisons are stable."""
    text = str(content).strip()
    try:
        if rtype == "A":
            return str(ipaddress.IPv4Address(text))
        if rtype == "AAAA":
            return ipaddress.IPv6Address(text).compressed
    except ValueError:
        raise InvalidInputError("%r is not a valid %s record address" % (content, rtype),
                                hint="Give an IPv4 address for A and an IPv6 address for AAAA")
    if rtype in ("CNAME", "NS", "PTR"):
        return canonical(text, "%s target" % rtype)
    if rtype == "TXT" and not text.startswith('"'):
        # PowerDNS stores TXT strings quoted; quote bare text the same way.
        return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')
    return text


def rrset_targets(params, zone):
    """[(name, type)] this call manages, after validating names against the zone."""
    rtype = params["type"]
    if params["organization"] is not None:
        label = organization_label(params["organization"])
        if params["wildcard"]:
            return [("*." + zone, rtype)]
        names = [label + "." + zone]
        if params["include_subdomains"]:
            names.append("*." + label + "." + zone)
        return [(name, rtype) for name in names]
    name = canonical(params["name"])
    require_in_zone(name, zone)
    first = name.split(".", 1)[0]
    if first.startswith("org-") and not ORG_LABEL.match(first):
        raise InvalidInputError("Organization record name %s does not match org-<uuid>" % name,
                                hint="Use the organization option, or a label like org-<lower-case uuid>")
    return [(name, rtype)]


def _owner(rrset):
    owners = [c["content"][len(OWNER_PREFIX):] for c in rrset.get("comments", ())
              if c.get("content", "").startswith(OWNER_PREFIX)]
    return owners[-1] if owners else None


def read_rrset(client, zone, name, rtype):
    """{'ttl', 'records', 'owner'} of one RRset, or None. Reads only that RRset, never the zone."""
    try:
        data = client.request("GET", client.zone_path(zone), query={"rrset_name": name, "rrset_type": rtype})
    except PdnsNotFoundError as exc:
        raise PdnsNotFoundError(
            "Zone %s does not exist on PowerDNS at %s (server id %s)" % (zone, client.api_url, client.server_id),
            hint="Create it with demiurge.gateway.pdns_zone, or fix the zone option", status=exc.status,
        )
    for rrset in data.get("rrsets", ()):
        if rrset["name"] == name and rrset["type"] == rtype:
            return {"ttl": rrset["ttl"], "records": _contents(rrset), "owner": _owner(rrset)}
    return None


def _contents(rrset):
    return sorted(r["content"] for r in rrset.get("records", ()) if not r.get("disabled"))


def list_organizations(client, zone):
    """[{organization, owner, names, rrsets}] of every org-<uuid> record set in the zone (one
    whole-zone read); rrsets carry what read_rrset returns, so a caller can compare without
    reading each one again."""
    data = client.request("GET", client.zone_path(zone))
    found = {}
    for rrset in data.get("rrsets", ()):
        relative = rrset["name"][:-len(zone) - 1] if rrset["name"].endswith("." + zone) else ""
        label = relative.split(".")[-1]
        if not ORG_LABEL.match(label):
            continue
        entry = found.setdefault(label, {"organization": label[len("org-"):], "owner": _owner(rrset), "names": [],
                                         "rrsets": []})
        entry["names"].append(rrset["name"])
        entry["rrsets"].append({"name": rrset["name"], "type": rrset["type"], "ttl": rrset.get("ttl"),
                                "records": _contents(rrset), "owner": _owner(rrset)})
    return sorted(found.values(), key=lambda entry: entry["organization"])


def _change(name, rtype, wanted):
    if wanted is None:
        return {"name": name, "type": rtype, "changetype": "DELETE"}
    change = {
        "name": name, "type": rtype, "ttl": wanted["ttl"], "changetype": "REPLACE",
        "records": [{"content": content, "disabled": False} for content in wanted["records"]],
        "comments": [],
    }
    if wanted["owner"] is not None:
        change["comments"] = [{"content": OWNER_PREFIX + wanted["owner"], "account": OWNER_ACCOUNT}]
    return change


def _refuse_foreign(name, current, owner, force):
    if current is None or owner is None or force or current["owner"] == owner:
        return
    raise InvalidInputError(
        "Record set %s is owned by %s, not by %s" % (name, current["owner"] or "nobody (no owner comment)", owner),
        hint="Leave it to its owner, or set force=true to take it over",
        current_owner=current["owner"],
    )


def ensure_rrsets(client, params, check_mode):
    zone = canonical(params["zone"], "zone")
    targets = rrset_targets(params, zone)
    rtype = params["type"]
    owner = WILDCARD_OWNER if params["organization"] is not None and params["wildcard"] else params["owner"]
    present = params["state"] == "present"
    if present and not params["records"]:
        raise InvalidInputError("state=present needs at least one record", hint="Set records, for example [127.0.0.1]")
    records = sorted({normalize_content(rtype, content) for content in params["records"] or ()})
    # One organization's release must never remove the wildcard every organization shares.
    shared_wildcard = params["organization"] is not None and params["wildcard"] and not present

    before, after, changes = {}, {}, []
    for name, dummy in targets:
        current = read_rrset(client, zone, name, rtype)
        wanted = {"ttl": params["ttl"], "records": records, "owner": owner} if present else None
        if shared_wildcard:
            wanted = current
        before[name], after[name] = current, wanted
        if current != wanted:
            _refuse_foreign(name, current, owner, params["force"])
            changes.append(_change(name, rtype, wanted))
    if changes and not check_mode:
        try:
            client.request("PATCH", client.zone_path(zone), {"rrsets": changes})
        except PdnsError as exc:
            # The PATCH is atomic: a refusal wrote nothing, but a timeout may still be applied.
            applied = exc.details.get("outcome", exc.outcome) != "not_applied"
            exc.msg = "Changing %s in zone %s failed, %s: %s" % (
                ", ".join(c["name"] for c in changes), zone,
                "whether it was written is unknown" if applied else "nothing was written", exc.msg)
            raise
    return {
        "changed": bool(changes),
        "zone": zone,
        "names": [name for name, dummy in targets],
        "rrsets": [dict(after[name], name=name, type=rtype) for name, dummy in targets if after[name] is not None],
        "diff": {"before": {n: v for n, v in before.items() if v}, "after": {n: v for n, v in after.items() if v}},
    }


# Organizations per PATCH: PowerDNS applies each atomically, and a timeout leaves at most this many
# organizations whose outcome is unknown.
BATCH_ORGANIZATIONS = 1000


def ensure_organizations(client, params, check_mode):
    """Many organizations' record sets from one read of the zone and one PATCH per
    BATCH_ORGANIZATIONS; each refusal fails only its own organization, and the call fails at the
    end naming each."""
    zone = canonical(params["zone"], "zone")
    rtype = params["type"]
    records = sorted({normalize_content(rtype, content) for content in params["records"] or ()})
    listed = {entry["organization"]: entry for entry in list_organizations(client, zone)}
    failed, pending, before, after = {}, [], {}, {}
    for item in params["organizations"]:
        key = str(item["organization"])
        try:
            label = organization_label(key)
            present = item["state"] == "present"
            if present and not records:
                raise InvalidInputError("state=present needs at least one record", hint="Set records, for example [127.0.0.1]")
            found = {(rrset["name"], rrset["type"]): rrset for rrset in listed.get(label[len("org-"):], {}).get("rrsets", ())}
            names = [label + "." + zone] + (["*." + label + "." + zone] if params["include_subdomains"] else [])
            changes = []
            for name in names:
                rrset = found.get((name, rtype))
                current = {key_: rrset[key_] for key_ in ("ttl", "records", "owner")} if rrset else None
                wanted = {"ttl": params["ttl"], "records": records, "owner": item["owner"]} if present else None
                if current != wanted:
                    _refuse_foreign(name, current, item["owner"], params["force"])
                    changes.append(_change(name, rtype, wanted))
                    before[name], after[name] = current, wanted
        except InvalidInputError as exc:
            failed[key] = str(exc)
            continue
        if changes:
            pending.append((key, changes))
    changed, unknown = [], []
    for start in range(0, len(pending), BATCH_ORGANIZATIONS):
        chunk = pending[start:start + BATCH_ORGANIZATIONS]
        if not check_mode:
            try:
                client.request("PATCH", client.zone_path(zone), {"rrsets": [c for dummy, cs in chunk for c in cs]})
            except PdnsError as exc:
                # Atomic: a refusal wrote none of the chunk, a timeout may have written all of it.
                applied = exc.details.get("outcome", exc.outcome) != "not_applied"
                for key, dummy in chunk:
                    failed[key] = "%s: %s" % ("whether it was written is unknown" if applied else "nothing was written", exc.msg)
                    if applied:
                        unknown.append(key)
                continue
        changed += [key for key, dummy in chunk]
    result = {
        "changed": bool(changed), "zone": zone, "changed_organizations": sorted(changed), "failed_organizations": failed,
        "unknown_organizations": sorted(unknown),
        "diff": {"before": {n: v for n, v in before.items() if v}, "after": {n: v for n, v in after.items() if v}},
    }
    if failed:
        raise PdnsError("%d of %d organizations' record sets in zone %s were not changed, the others were: %s" % (
            len(failed), len(params["organizations"]), zone, "; ".join("%s: %s" % item for item in sorted(failed.items()))),
            hint="Fix each cause named, then run again", outcome="unknown" if unknown else "not_applied", **result)
    return result


def rrset_info(client, params):
    zone = canonical(params["zone"], "zone")
    if params.get("list_organizations"):
        return {"changed": False, "zone": zone, "organizations": list_organizations(client, zone)}
    found = []
    for name, rtype in rrset_targets(params, zone):
        current = read_rrset(client, zone, name, rtype)
        if current is not None:
            found.append(dict(current, name=name, type=rtype))
    return {"changed": False, "zone": zone, "rrsets": found, "exists": bool(found)}


def rrset_selector_spec():
    """Options that pick the record sets (documented in doc_fragments/pdns_rrset.py)."""
    return {
        "zone": {"type": "str", "required": True},
        "name": {"type": "str"},
        "organization": {"type": "str"},
        "type": {"type": "str", "default": "A", "choices": ["A", "AAAA", "CNAME", "TXT"]},
        "include_subdomains": {"type": "bool", "default": True},
        "wildcard": {"type": "bool", "default": False},
    }


def rrset_argument_spec():
    spec = pdns_argument_spec()
    spec.update(rrset_selector_spec())
    spec.update(journal_argument_spec())
    spec.update(
        organizations={"type": "list", "elements": "dict", "options": {
            "organization": {"type": "str", "required": True},
            "owner": {"type": "str"},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
        }},
        state={"type": "str", "default": "present", "choices": ["present", "absent"]},
        records={"type": "list", "elements": "str", "default": []},
        ttl={"type": "int", "default": 60},
        owner={"type": "str"},
        force={"type": "bool", "default": False},
    )
    return spec


def rrset_info_argument_spec():
    spec = pdns_argument_spec()
    spec.update(rrset_selector_spec())
    spec.update(list_organizations={"type": "bool", "default": False})
    return spec


PDNS_RRSET = ModuleDef(
    rrset_argument_spec,
    lambda call: (ensure_rrsets if call.params["organizations"] is None else ensure_organizations)(
        PdnsClient.from_params(call.params), call.params, call.check_mode),
    batch="organizations",
    mutually_exclusive=[("name", "organization", "organizations"), ("organizations", "wildcard")],
    required_one_of=[("name", "organization", "organizations")])
PDNS_RRSET_INFO = ModuleDef(
    rrset_info_argument_spec, lambda call: rrset_info(PdnsClient.from_params(call.params), call.params),
    mutually_exclusive=[("name", "organization", "list_organizations")],
    required_one_of=[("name", "organization", "list_organizations")])
