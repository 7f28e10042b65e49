#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pdns_rrset
short_description: Manage an organization's (or any) record set in PowerDNS
version_added: 0.1.0
description:
  - Creates, replaces or deletes record sets over the PowerDNS HTTP API. With O(organization) it
    manages C(org-<uuid>.<zone>) and C(*.org-<uuid>.<zone>) together, in one atomic PATCH.
  - Reads only the addressed record sets (never the whole zone), compares records and TTL, and
    writes only on a difference. V(absent) on a missing record set is a no-op, so rollbacks can
    always call it.
  - The record set carries a comment C(owner=<owner>). A call that names O(owner) refuses to replace
    or delete a record set owned by someone else (or by nobody) unless O(force=true); the error
    names the current owner.
  - Transient API failures are retried (see O(retries)); nothing is written when a call fails.
extends_documentation_fragment:
  - demiurge.gateway.controller
  - demiurge.gateway.journal
  - demiurge.gateway.pdns_api
  - demiurge.gateway.pdns_rrset
  - demiurge.gateway.attributes
options:
  state:
    description: Whether the record sets exist.
    type: str
    choices: [present, absent]
    default: present
  records:
    description:
      - Record contents, for example the edge's addresses (one A record each). Required for
        O(state=present). Order and duplicates do not matter.
    type: list
    elements: str
    default: []
  ttl:
    description: TTL in seconds.
    type: int
    default: 60
  owner:
    description:
      - Owner recorded on the record set, normally the allocation id.
      - Omit to manage the record set without ownership checks.
    type: str
  force:
    description: Replace or delete a record set owned by another owner.
    type: bool
    default: false
seealso:
  - module: demiurge.gateway.pdns_rrset_info
  - module: demiurge.gateway.pdns_zone
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
- name: Point an organization's names at the edge
  demiurge.gateway.pdns_rrset:
    api_url: http://127.0.0.1:15081
    api_key: "{{ pdns_api_key }}"
    zone: dev-001.demiurge.test
    organization: 0b5e9b7c-1a2b-4c3d-8e9f-001122334455
    records: [127.0.0.1]
    owner: "{{ allocation_id }}"

- name: Withdraw them again (a no-op when they are gone)
  demiurge.gateway.pdns_rrset:
    zone: dev-001.demiurge.test
    organization: 0b5e9b7c-1a2b-4c3d-8e9f-001122334455
    owner: "{{ allocation_id }}"
    state: absent
  environment:
    PDNS_API_URL: http://127.0.0.1:15081
    PDNS_API_KEY: "{{ pdns_api_key }}"

- name: One AAAA record set by name
  demiurge.gateway.pdns_rrset:
    zone: dev-001.demiurge.test
    name: edge.dev-001.demiurge.test
    type: AAAA
    records: ["::1"]
"""

RETURN = r"""
zone:
  description: Canonical zone name.
  returned: always
  type: str
  sample: dev-001.demiurge.test.
names:
  description: Canonical names of the addressed record sets.
  returned: always
  type: list
  elements: str
  sample: [org-0b5e9b7c-1a2b-4c3d-8e9f-001122334455.dev-001.demiurge.test.]
rrsets:
  description: The record sets after the call (predicted in check mode); empty after V(absent).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "org-0b5e9b7c-1a2b-4c3d-8e9f-001122334455.dev-001.demiurge.test.", "type": "A",
            "ttl": 60, "records": ["127.0.0.1"], "owner": "5d0f6c1e-3b7a-4e51-9a55-0e6f1c2d3b4a"}]
current_owner:
  description: Owner of the record set that blocked the call, when it failed for that reason.
  returned: failure
  type: str
  sample: 5d0f6c1e-3b7a-4e51-9a55-0e6f1c2d3b4a
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module
from ansible_collections.demiurge.gateway.plugins.module_utils._pdns_rrset import PDNS_RRSET


def main():
    run_module(PDNS_RRSET)


if __name__ == "__main__":
    main()
