#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pdns_rrset_info
short_description: Read an organization's (or any) record set from PowerDNS
version_added: 0.1.0
description:
  - Reads the record sets that M(demiurge.gateway.pdns_rrset) would manage with the same options,
    one RRset per request, never the whole zone.
  - With O(list_organizations=true), reads the whole zone once and lists every organization that has
    record sets in it, with their owner (for drift checks).
extends_documentation_fragment:
  - demiurge.gateway.controller
  - demiurge.gateway.pdns_api
  - demiurge.gateway.pdns_rrset
  - demiurge.gateway.attributes.INFO_MODULE
options:
  list_organizations:
    description: List every organization with record sets in O(zone) instead of reading O(name) or O(organization).
    type: bool
    default: false
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
- name: Where does an organization point?
  demiurge.gateway.pdns_rrset_info:
    api_url: http://127.0.0.1:15081
    api_key: "{{ pdns_api_key }}"
    zone: dev-001.demiurge.test
    organization: 0b5e9b7c-1a2b-4c3d-8e9f-001122334455
  register: org_dns
"""

RETURN = r"""
zone:
  description: Canonical zone name.
  returned: always
  type: str
  sample: dev-001.demiurge.test.
exists:
  description: Whether at least one addressed record set exists.
  returned: unless O(list_organizations=true)
  type: bool
  sample: true
organizations:
  description:
    - Organizations with record sets in the zone, their owner, record names and record sets (each
      with type, TTL, records and owner, as RV(rrsets) gives them).
  returned: when O(list_organizations=true)
  type: list
  elements: dict
  sample: [{"organization": "0b5e9b7c-1a2b-4c3d-8e9f-001122334455", "owner": "5d0f6c1e-3b7a-4e51-9a55-0e6f1c2d3b4a",
            "names": ["org-0b5e9b7c-1a2b-4c3d-8e9f-001122334455.dev-001.demiurge.test."],
            "rrsets": [{"name": "org-0b5e9b7c-1a2b-4c3d-8e9f-001122334455.dev-001.demiurge.test.", "type": "A",
                        "ttl": 60, "records": ["127.0.0.1"], "owner": "5d0f6c1e-3b7a-4e51-9a55-0e6f1c2d3b4a"}]}]
rrsets:
  description: The addressed record sets that exist, with records, TTL and owner (null when none is recorded).
  returned: unless O(list_organizations=true)
  type: list
  elements: dict
  sample: [{"name": "org-0b5e9b7c-1a2b-4c3d-8e9f-001122334455.dev-001.demiurge.test.", "type": "A",
            "ttl": 60, "records": ["127.0.0.1"], "owner": "5d0f6c1e-3b7a-4e51-9a55-0e6f1c2d3b4a"}]
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module
from ansible_collections.demiurge.gateway.plugins.module_utils._pdns_rrset import PDNS_RRSET_INFO


def main():
    run_module(PDNS_RRSET_INFO)


if __name__ == "__main__":
    main()
