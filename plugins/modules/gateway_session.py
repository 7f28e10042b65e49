#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: gateway_session
short_description: Hand a gateway to an organization (the allocation handshake)
version_added: 0.1.0
description:
  - Stores a one-time handshake token with the allocation in the pool database, then sends it to
    the gateway as C(POST /collab/start) with a JSON body holding C(tmp_handshake_token), a UUID. The gateway
    exchanges the token for its organization's configuration at the platform's API
    (C(POST /gateway/config), which calls C(func_organizations_gateways_get)). The token is valid
    once, and only while the allocation is in progress under its lease.
  - Only the run that holds the allocation's lease (O(lease_holder)) may store the token.
  - A refused connection fails with nothing sent; a timeout leaves it unknown whether the gateway
    took the token, and the caller must recycle the gateway when it rolls back.
  - There is no reverse. A gateway leaves an organization by being recycled with
    M(demiurge.gateway.gateway_recycle).
extends_documentation_fragment:
  - demiurge.gateway.controller
  - demiurge.gateway.pool_db
  - demiurge.gateway.journal
  - demiurge.gateway.attributes
attributes:
  idempotent:
    support: none
    details: Every call is a new handshake with a new token; the allocation journal runs it once per allocation.
options:
  api_url:
    description:
      - Base URL of the gateway's API.
      - Required with O(organization) and O(allocation_id); exactly one of O(organization) and O(sessions) is required.
    type: str
  organization:
    description: Organization UUID (for the messages; the gateway learns it from the platform).
    type: str
  allocation_id:
    description: The allocation the token belongs to.
    type: str
  sessions:
    description:
      - Many gateways at once, O(concurrency) handshakes at a time, each with its own token. One
        that fails fails only its own organization; the task then fails naming each organization
        and its cause (RV(failed_organizations)).
    type: list
    elements: dict
    suboptions:
      api_url:
        description: Base URL of the gateway's API.
        type: str
        required: true
      organization:
        description: Organization UUID.
        type: str
        required: true
      allocation_id:
        description: The allocation the token belongs to.
        type: str
        required: true
  concurrency:
    description: How many handshakes of O(sessions) run at once.
    type: int
    default: 10
  lease_holder:
    description: This run's lease holder id, as M(demiurge.gateway.pool_allocation) returned it.
    type: str
  timeout:
    description: Seconds to wait for the gateway's answer.
    type: float
    default: 10
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
- name: Hand the gateway to the organization
  demiurge.gateway.gateway_session:
    api_url: "{{ claim.allocation.api_url }}"
    organization: "{{ organization_id }}"
    allocation_id: "{{ claim.allocation.allocation_id }}"
    lease_holder: "{{ claim.lease_holder }}"
    login_password: "{{ pool_db_password }}"
  delegate_to: localhost

- name: Hand many gateways to their organizations, ten at a time
  demiurge.gateway.gateway_session:
    sessions:
      - api_url: http://127.0.0.1:15501
        organization: 0b5e9b7c-1a2b-4c3d-8e9f-001122334455
        allocation_id: 5d0f6c1e-3b7a-4e51-9a55-0e6f1c2d3b4a
      - api_url: http://127.0.0.1:15502
        organization: 7c1d2e3f-4a5b-4c6d-8e7f-8899aabbccdd
        allocation_id: 0a1b2c3d-4e5f-4a6b-8c7d-8e9f00112233
    lease_holder: "{{ claims.lease_holder }}"
    login_password: "{{ pool_db_password }}"
  delegate_to: localhost
"""

RETURN = r"""
organization:
  description: Organization the gateway was handed to.
  returned: unless O(sessions) is given
  type: str
  sample: 0b5e9b7c-1a2b-4c3d-8e9f-001122334455
organizations:
  description: With O(sessions), the organizations whose gateway was handed over (in check mode, would be).
  returned: with O(sessions)
  type: list
  elements: str
  sample: ["0b5e9b7c-1a2b-4c3d-8e9f-001122334455"]
failed_organizations:
  description: With O(sessions), each organization whose gateway was not handed over (or may have been), with the cause.
  returned: with O(sessions)
  type: dict
  sample: {"7c1d2e3f-4a5b-4c6d-8e7f-8899aabbccdd": "Gateway at http://127.0.0.1:15502 refused the handshake ... HTTP 503"}
unknown_organizations:
  description:
    - The organizations of RV(failed_organizations) whose gateway may have taken the token all the
      same (a timeout); their gateway is recycled when the allocation is rolled back, as any is.
  returned: with O(sessions)
  type: list
  elements: str
  sample: []
gateway_faults:
  description:
    - The organizations of RV(failed_organizations) whose failure is their gateway's (it refused or
      did not answer the handshake, or answered without the token's exchange). The journal records
      it, and the pool quarantines a gateway that fails C(gateway_fault_limit) allocations in a row (M(demiurge.gateway.pool_settings)).
    - Without O(sessions), a failed call says the same in its own C(gateway_fault).
  returned: with O(sessions)
  type: list
  elements: str
  sample: []
  version_added: 0.5.0
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._gateway_api import GATEWAY_SESSION
from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module


def main():
    run_module(GATEWAY_SESSION)


if __name__ == "__main__":
    main()
