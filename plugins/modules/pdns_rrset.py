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
  - With O(organizations), many organizations' record sets change together, with one read of the whole
    zone and one atomic PATCH per 1,000 organizations holding only what differs. Ownership is
    checked for each organization, and each refusal fails only its own organization; the task then
    fails naming each organization and its cause (RV(failed_organizations)). A PATCH that timed out
    may have been applied, so its organizations are reported as unknown, never as unwritten.
extends_documentation_fragment:
  - demiurge.gateway.controller
  - demiurge.gateway.journal
  - demiurge.gateway.pdns_api
  - demiurge.gateway.pdns_rrset
  - demiurge.gateway.attributes
options:
  organizations:
    description:
      - Many organizations at once, each with its own O(owner) and O(state) (O(records), O(ttl),
        O(type), O(include_subdomains) and O(force) apply to all).
      - Mutually exclusive with O(name), O(organization) and O(wildcard).
    type: list
    elements: dict
    suboptions:
      organization:
        description: Organization UUID.
        type: str
        required: true
      owner:
        description: Owner recorded on its record sets, checked as O(owner) is.
        type: str
      state:
        description: Whether its record sets exist.
        type: str
        choices: [present, absent]
        default: present
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

- name: Restore many organizations' names in one read and one PATCH
  demiurge.gateway.pdns_rrset:
    zone: dev-001.demiurge.test
    records: [127.0.0.1]
    organizations:
      - organization: 0b5e9b7c-1a2b-4c3d-8e9f-001122334455
        owner: 5d0f6c1e-3b7a-4e51-9a55-0e6f1c2d3b4a
      - organization: 7c1d2e3f-4a5b-4c6d-8e7f-8899aabbccdd
        owner: 0a1b2c3d-4e5f-4a6b-8c7d-8e9f00112233

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
  returned: unless O(organizations) is given
  type: list
  elements: str
  sample: [org-0b5e9b7c-1a2b-4c3d-8e9f-001122334455.dev-001.demiurge.test.]
rrsets:
  description: The record sets after the call (predicted in check mode); empty after V(absent).
  returned: unless O(organizations) is given
  type: list
  elements: dict
  sample: [{"name": "org-0b5e9b7c-1a2b-4c3d-8e9f-001122334455.dev-001.demiurge.test.", "type": "A",
            "ttl": 60, "records": ["127.0.0.1"], "owner": "5d0f6c1e-3b7a-4e51-9a55-0e6f1c2d3b4a"}]
changed_organizations:
  description: The organizations whose record sets changed (in check mode, would change).
  returned: with O(organizations)
  type: list
  elements: str
  sample: ["0b5e9b7c-1a2b-4c3d-8e9f-001122334455"]
failed_organizations:
  description: Each organization whose record sets were not changed (or whose outcome is unknown), with the cause.
  returned: with O(organizations)
  type: dict
  sample:
    7c1d2e3f-4a5b-4c6d-8e7f-8899aabbccdd: >-
      Record set org-7c1d2e3f-4a5b-4c6d-8e7f-8899aabbccdd.dev-001.demiurge.test. is owned by
      1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b, not by 0a1b2c3d-4e5f-4a6b-8c7d-8e9f00112233
unknown_organizations:
  description:
    - The organizations of RV(failed_organizations) whose record sets may have changed all the same (a
      request that timed out may have been applied); the others certainly did not change.
  returned: with O(organizations)
  type: list
  elements: str
  sample: []
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
