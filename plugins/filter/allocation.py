# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the allocation playbooks: demiurge.gateway.allocation_result (what a run publishes of
an allocation), and the steps of an allocation for a list of organizations
(roles/allocation/tasks/allocate_batch.yml): demiurge.gateway.batch_entries and
demiurge.gateway.failed_organizations."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.demiurge.gateway.plugins.filter.failure_cause import failure_cause


def allocation_result(allocation, zone):
    """What allocate.yml publishes (set_stats) of an allocation: its organization's host name,
    allocation id, gateway and where the gateway is."""
    return {"organization": allocation["organization"],
            "host_name": "org-%s.%s" % (allocation["organization"], str(zone).rstrip(".")),
            "allocation_id": allocation["allocation_id"], "gateway": allocation["gateway_name"],
            "nginx_upstream": allocation["nginx_upstream"], "gateway_metadata": allocation["gateway_metadata"]}


def batch_entries(allocations, step):
    """What one task of a batch step takes for the allocations {organization: allocation}:
    `dns`, `route` and `handshake` give the entries of pdns_rrset's organizations, edge_route's
    routes and gateway_session's sessions, `journal` the journal's allocations (organization ->
    allocation id)."""
    if step == "journal":
        return {organization: allocation["allocation_id"] for organization, allocation in allocations.items()}
    if step == "dns":
        return [{"organization": organization, "owner": allocation["allocation_id"]}
                for organization, allocation in allocations.items()]
    if step == "route":
        return [{"organization": organization, "owner": allocation["allocation_id"], "upstream": allocation["nginx_upstream"]}
                for organization, allocation in allocations.items()]
    if step == "handshake":
        return [{"organization": organization, "allocation_id": allocation["allocation_id"], "api_url": allocation["api_url"]}
                for organization, allocation in allocations.items()]
    raise AnsibleFilterError("batch_entries: step must be dns, route, handshake or journal, not %r" % (step,))


def _failed(result):
    """Failed, also when the task's failed_when: false cleared `failed`: the collection's modules
    name their error class (`error`) in every failure."""
    return bool(result.get("failed") or result.get("unreachable") or result.get("error") or result.get("exception"))


def failed_organizations(result, step, organizations, default_host="localhost"):
    """{organization: "step '<step>' on <host>: <cause>"} for each organization of `organizations`
    that a batch step's registered result says failed. The result is one call for many
    organizations (its failed_organizations; a call that failed as a whole failed for each), a
    loop of such calls (one per edge), or a loop with one organization per item (item.organization)."""
    result = result or {}
    organizations = list(organizations)
    calls = result.get("results") if "results" in result else [result]
    found = {}
    for call in calls:
        if call.get("skipped"):
            continue
        if isinstance(call.get("failed_organizations"), dict):
            host = call.get("item") if isinstance(call.get("item"), str) else call.get("failed_on") or default_host
            for organization, why in call["failed_organizations"].items():
                found.setdefault(str(organization), "step '%s' on %s: %s" % (step, host, str(why).strip()))
        elif not _failed(call):
            continue
        elif isinstance(call.get("item"), dict) and "organization" in call["item"]:
            found.setdefault(call["item"]["organization"], _cause(call, step, default_host))
        else:
            for organization in organizations:
                found.setdefault(organization, _cause(call, step, default_host))
    return {organization: cause for organization, cause in found.items() if organization in organizations}


def _cause(result, step, default_host):
    # failure_cause reads only failed items of a loop: this one is failed, whatever failed_when said.
    return failure_cause(dict(result, failed=True), step, default_host)


class FilterModule:
    def filters(self):
        return {"allocation_result": allocation_result, "batch_entries": batch_entries,
                "failed_organizations": failed_organizations}
