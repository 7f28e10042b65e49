# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Which record sets a call addresses; matches rrset_selector_spec() in module_utils/_pdns_rrset.py.
    DOCUMENTATION = r"""
options:
  zone:
    description: Zone holding the record set; a trailing dot is added when missing.
    type: str
    required: true
  name:
    description:
      - Record name, inside O(zone). Names whose first label starts with C(org-) must be C(org-<uuid>).
      - Mutually exclusive with O(organization) (and, in M(demiurge.gateway.pdns_rrset), O(demiurge.gateway.pdns_rrset#module:organizations)).
    type: str
  organization:
    description:
      - Organization UUID. Addresses C(org-<uuid>.<zone>) and, with O(include_subdomains),
        C(*.org-<uuid>.<zone>) for its subdomains (user containers live at C(uc-<id>.org-<uuid>.<zone>)).
      - Mutually exclusive with O(name).
    type: str
  type:
    description: Record type.
    type: str
    choices: [A, AAAA, CNAME, TXT]
    default: A
  include_subdomains:
    description: With O(organization), also address C(*.org-<uuid>.<zone>).
    type: bool
    default: true
  wildcard:
    description:
      - With O(organization), address the one shared C(*.<zone>) record instead of a record per
        organization, for operators who route by nginx alone.
      - Removing an organization in this mode never deletes the shared record.
    type: bool
    default: false
"""
