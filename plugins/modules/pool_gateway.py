#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pool_gateway
short_description: Register, update or remove a gateway in the pool
version_added: 0.1.0
description:
  - Registers a pre-started gateway (C(proc_gateway_new)), updates its addresses or metadata, and
    moves it between V(ready), V(quarantined) and V(retired).
  - A gateway only becomes V(ready) once it answers its health check (C(GET) O(health_path) with
    200), and through C(proc_gateways_set_ready), which refuses while the gateway is allocated;
    addresses of an allocated gateway cannot change.
  - O(api_url) must be an C(http) or C(https) URL with a host, an explicit port from 1 to 65535 and at
    most a plain path (no query, no white space, no other characters), and O(nginx_upstream)
    an IP literal and a port from 1 to 65535 (nginx resolves no names in the edge's map).
  - V(absent) deletes a gateway that was never allocated and retires one with allocation history.
  - One transaction per call; check mode runs it and rolls back.
extends_documentation_fragment:
  - demiurge.gateway.controller
  - demiurge.gateway.pool_db
  - demiurge.gateway.attributes
options:
  name:
    description: Gateway name (lower-case letters, digits, C(-)).
    type: str
    required: true
  api_url:
    description: Base URL of the gateway's API, for health checks and the handshake. Required to register.
    type: str
  nginx_upstream:
    description: C(<ip>:<port>) the edge proxies to. Required to register.
    type: str
  metadata:
    description:
      - Metadata stored with the gateway. The life cycle reads C(host) (where the gateway runs),
        C(data_dir) (the gateway's data directory, its C(/data)), C(tmp_dir) (its private C(/tmp))
        and C(service) (how M(demiurge.gateway.gateway_recycle) stops and starts it, with the key
        C(daemon) or C(systemd_unit)).
      - A gateway is put in service (V(ready)) only when its metadata names C(data_dir) and
        C(service), and C(tmp_dir), when given, as absolute paths. Without them every allocation
        that claimed it would fail and its rollback could not recycle it. Pool migration 5
        quarantines ready gateways registered without them.
    type: dict
  status:
    description: Status to move the gateway to; omit to leave it.
    type: str
    choices: [ready, quarantined, retired]
  status_reason:
    description: Why the gateway got O(status), for V(quarantined) and V(retired).
    type: str
  health_path:
    description: The gateway's health check path, checked before it becomes V(ready).
    type: str
    default: /collab/ping
  health_timeout:
    description: Seconds to wait for the health check's answer.
    type: float
    default: 5
  scrubbed:
    description:
      - The gateway was just recycled and verified empty (M(demiurge.gateway.gateway_recycle)); records
        a C(gateway.scrubbed) event with the status change.
    type: bool
    default: false
    version_added: 0.3.0
  from_status:
    description:
      - Move the gateway to O(status) only when its status is one of these; any other status is
        left alone, without failing. For a caller that decided on a status it read earlier, which
        may have changed since (reconcile sets aside a ready gateway only while it is still ready).
    type: list
    elements: str
    version_added: 0.5.0
  state:
    description: Whether the gateway is registered.
    type: str
    choices: [present, absent]
    default: present
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
# The gateway_standin role registers the gateways it runs this way; see docs/howto-inventory.md.
- name: Register a gateway and put it in the pool
  demiurge.gateway.pool_gateway:
    name: gw-001
    api_url: http://127.0.0.1:21001
    nginx_upstream: 127.0.0.1:21001
    metadata:
      host: gwhost1
      data_dir: /srv/gateways/gw-001/data
      tmp_dir: /srv/gateways/gw-001/tmp
      service:
        systemd_unit: demiurge-gateway@gw-001.service
    status: ready
  delegate_to: localhost

- name: Take a gateway out of service
  demiurge.gateway.pool_gateway:
    name: gw-001
    status: quarantined
    status_reason: failed its health check after release
"""

RETURN = r"""
gateway:
  description: The gateway after the call; null after V(absent).
  returned: always
  type: dict
  sample: {"id": "9c3f8e0a-5b0e-4f7a-8a51-0f2b9d1c7e44", "name": "gw-001", "api_url": "http://127.0.0.1:21001",
           "nginx_upstream": "127.0.0.1:21001", "status": "ready", "metadata": {}}
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._pool_ops import POOL_GATEWAY
from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module


def main():
    run_module(POOL_GATEWAY)


if __name__ == "__main__":
    main()
