# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter demiurge.gateway.failure_cause: what failed, where, and why, in one line."""

from __future__ import annotations


def _host(result, default_host):
    """The host a failed result came from: the loop's item when it names a host, else the host a
    delegated task ran on (failed_on, set by the collection's action plugins)."""
    item = result.get("item")
    return item if isinstance(item, str) else result.get("failed_on") or default_host


def failure_cause(result, step="", default_host="localhost"):
    """A task result (a loop's included) as "step 'x' on <host>: <cause>; ..." for every failed
    item, so a rescue never reports a bare "One or more items failed"."""
    result = result or {}
    items = result.get("results")
    failed = [item for item in items if item.get("failed") or item.get("unreachable")] if items else [result]
    causes = []
    for item in failed or [result]:
        cause = str(item.get("msg") or "no message").strip()
        if item.get("unreachable"):
            cause = "host unreachable: %s" % cause
        causes.append("%s on %s: %s" % ("step '%s'" % step if step else "a step", _host(item, default_host), cause))
    return "; ".join(causes)


def _dig(value, path):
    for key in path.split("."):
        value = value[int(key)] if isinstance(value, (list, tuple)) else value.get(key)
    return value


def failed_items(results, label=None):
    """"<label>: <cause>" for every item of a loop that reported a failure, including loops run
    with failed_when: false so that one item's failure does not stop the others. `label` is a
    dotted path into each result (for example item.organization); by default the item itself
    when it is a string. A batch item that names its failed organizations (failed_organizations)
    gives one string per organization, labelled by the organization."""
    found = []
    for item in (results or {}).get("results", []):
        if item.get("failed_organizations"):
            found += ["%s: %s" % (name, str(cause).strip()) for name, cause in sorted(item["failed_organizations"].items())]
        elif item.get("msg") and (item.get("error") or item.get("failed") or item.get("exception")):
            name = _dig(item, label) if label else item.get("item") if isinstance(item.get("item"), str) \
                else item.get("_ansible_item_label", item.get("item"))
            found.append("%s: %s" % (name, str(item["msg"]).strip()))
    return found


def repair_events(results, repair, organization=None, host=None):
    """A reconcile.repaired event (for demiurge.gateway.pool_event) for every item of a loop that
    changed something and did not fail, or for every organization a batch item lists in
    changed_organizations (a batch that failed for some still changed those), and one
    ("routes_made_live", no organization) for an edge where the batch made live what a job that
    died had left unreloaded; organization and host are dotted paths into each result."""
    events = []
    for item in (results or {}).get("results", []):
        if "changed_organizations" in item:
            changed = item["changed_organizations"]
        else:
            changed = [_dig(item, organization)] if item.get("changed") and not item.get("failed") else []
        found = [{"kind": "reconcile.repaired", "step": repair, "organization": name} for name in changed]
        if item.get("made_live"):
            found.append({"kind": "reconcile.repaired", "step": "routes_made_live"})
        for event in found:
            if host:
                event["host"] = _dig(item, host)
        events += found
    return events


class FilterModule:
    def filters(self):
        return {"failure_cause": failure_cause, "failed_items": failed_items, "repair_events": repair_events}
