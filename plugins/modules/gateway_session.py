#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: gateway_session
short_description: Start or reset an organization's session on a gateway
version_added: 0.1.0
description:
  - V(started) performs the allocation handshake, C(POST /collab/start) with the organization and a
    one-time handshake token; the gateway then fetches its configuration itself. A gateway that
    already serves the organization is left alone.
  - V(reset) ends the session (C(POST /collab/reset)) and waits up to O(health_timeout) for
    C(GET /health) to answer 200. It does not fail on an unhealthy gateway; it returns RV(healthy) so
    the caller can return the gateway to the pool or quarantine it.
  - Runs in the controller process when the task runs on the controller.
extends_documentation_fragment:
  - demiurge.gateway.journal
  - demiurge.gateway.attributes
options:
  api_url:
    description: Base URL of the gateway's API.
    type: str
    required: true
  organization:
    description: Organization UUID.
    type: str
    required: true
  state:
    description: Whether the organization's session runs.
    type: str
    choices: [started, reset]
    default: started
  handshake_token:
    description:
      - One-time token the gateway presents when it fetches its configuration, for V(started).
      - When omitted, a random token (40 URL-safe characters) is generated for the call.
    type: str
  timeout:
    description: Seconds to wait for one HTTP answer.
    type: float
    default: 5
  health_timeout:
    description: Seconds to wait for the gateway to be healthy after V(reset).
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
  delegate_to: localhost
"""

RETURN = r"""
healthy:
  description: Whether the gateway answered its health check after the call.
  returned: always
  type: bool
  sample: true
organization:
  description: Organization the gateway serves after the call, null after V(reset).
  returned: always
  type: str
  sample: 0b5e9b7c-1a2b-4c3d-8e9f-001122334455
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._gateway_api import GATEWAY_SESSION
from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module


def main():
    run_module(GATEWAY_SESSION)


if __name__ == "__main__":
    main()
