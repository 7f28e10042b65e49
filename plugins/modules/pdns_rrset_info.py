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
extends_documentation_fragment:
  - demiurge.gateway.pdns_api
  - demiurge.gateway.pdns_rrset
  - demiurge.gateway.attributes.INFO_MODULE
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
  returned: always
  type: bool
  sample: true
rrsets:
  description: The addressed record sets that exist, with records, TTL and owner (null when none is recorded).
  returned: always
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
