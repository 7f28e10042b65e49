#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: gateway_session_info
short_description: Which organization's session a gateway holds
version_added: 0.5.0
description:
  - Reads the session the gateway keeps in its C(/tmp) (C(project-config.json), written at the
    handshake once the platform API exchanged the token, and re-entered by the gateway when it
    starts) and returns its organization.
  - It is what proves that a gateway still serves an allocation. C(reconcile.yml) rolls an
    allocation forward only when its gateway holds that organization's session and answers its
    health check.
  - Never returns the session's token or any other of its content.
  - Runs on the gateway's host.
extends_documentation_fragment:
  - demiurge.gateway.controller
  - demiurge.gateway.attributes.INFO_MODULE
options:
  tmp_dir:
    description: The directory the gateway sees as its C(/tmp), as its pool metadata records it (C(tmp_dir)).
    type: path
    required: true
  api_url:
    description:
      - Base URL of the gateway's API. With it, the module also asks the gateway's health check
        (RV(healthy)), since a session file outlives a gateway that died.
    type: str
  health_path:
    description: The gateway's health check path.
    type: str
    default: /collab/ping
  timeout:
    description: Seconds to wait for the health check's answer.
    type: float
    default: 5
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
- name: Find which organization the gateway serves
  demiurge.gateway.gateway_session_info:
    tmp_dir: "{{ gateway.metadata.tmp_dir }}"
  delegate_to: "{{ gateway.metadata.host }}"
  register: session
"""

RETURN = r"""
organization:
  description: The organization whose session the gateway's C(/tmp) holds; null when it holds none.
  returned: always
  type: str
  sample: 0b5e9b7c-1a2b-4c3d-8e9f-001122334455
healthy:
  description: Whether the gateway answered its health check with 200; null without O(api_url).
  returned: always
  type: bool
  sample: true
readable:
  description: False when a session file is there but cannot be read as a session (the gateway holds something all the same).
  returned: always
  type: bool
  sample: true
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._gateway_api import GATEWAY_SESSION_INFO
from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module


def main():
    run_module(GATEWAY_SESSION_INFO)


if __name__ == "__main__":
    main()
