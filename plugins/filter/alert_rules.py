# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import yaml

from ansible.errors import AnsibleFilterError

# The runbook links in the shipped rule file start with this; alert_rules points them elsewhere.
SHIPPED_RUNBOOK_BASE = "https://example.invalid/demiurge/gateway/blob/main/docs/runbooks.md"


def alert_rules(text, hold_times=None, runbook_base=None):
    """The shipped rule file (its text) with hold times ("for") replaced per alert name and the
    runbook links pointed at runbook_base, as YAML text."""
    rules = yaml.safe_load(text)
    hold_times = dict(hold_times or {})
    known = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert")
            known.add(name)
            if name in hold_times:
                rule["for"] = str(hold_times[name])
            link = rule.get("annotations", {}).get("runbook_url", "")
            if runbook_base and link.startswith(SHIPPED_RUNBOOK_BASE):
                rule["annotations"]["runbook_url"] = runbook_base + link[len(SHIPPED_RUNBOOK_BASE):]
    unknown = sorted(set(hold_times) - known)
    if unknown:
        raise AnsibleFilterError("No alert is named %s; the alerts are %s" % (", ".join(unknown), ", ".join(sorted(known))))
    return yaml.safe_dump(rules, sort_keys=False, width=200, default_flow_style=False)


class FilterModule:
    def filters(self):
        return {"alert_rules": alert_rules}
