#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pdns_zone
short_description: Ensure a PowerDNS zone exists with its SOA and name servers
version_added: 0.1.0
description:
  - Creates, updates or deletes one zone on a PowerDNS Authoritative server over its HTTP API.
  - A new zone gets the server's default SOA (kept current by C(soa_edit_api=DEFAULT)) and an NS
    record set naming O(nameservers).
  - After any change the server's packet cache is flushed for the zone, so names queried before
    the zone existed are answered at once instead of staying REFUSED for the cache lifetime.
extends_documentation_fragment:
  - demiurge.gateway.controller
  - demiurge.gateway.pdns_api
  - demiurge.gateway.attributes
options:
  name:
    description: Zone name; a trailing dot is added when missing.
    type: str
    required: true
  state:
    description:
      - V(present) creates the zone or brings kind and name servers in line.
      - V(absent) deletes the zone with every record in it.
    type: str
    choices: [present, absent]
    default: present
  kind:
    description: Zone kind.
    type: str
    choices: [Native, Master, Slave]
    default: Native
  nameservers:
    description: Name servers of the zone (its apex NS record set). Defaults to C(ns1.<zone>).
    type: list
    elements: str
    default: []
  ns_ttl:
    description: TTL of the NS record set when it is replaced.
    type: int
    default: 3600
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
- name: Ensure the environment's zone exists
  demiurge.gateway.pdns_zone:
    api_url: http://127.0.0.1:15081
    api_key: "{{ pdns_api_key }}"
    name: dev-001.demiurge.test
"""

RETURN = r"""
zone:
  description: Canonical zone name.
  returned: always
  type: str
  sample: dev-001.demiurge.test.
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module
from ansible_collections.demiurge.gateway.plugins.module_utils._pdns_zone import PDNS_ZONE


def main():
    run_module(PDNS_ZONE)


if __name__ == "__main__":
    main()
