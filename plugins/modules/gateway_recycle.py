#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: gateway_recycle
short_description: Scrub a gateway so it may serve another organization
version_added: 0.2.0
description:
  - A gateway keeps its organization's state in memory and in its C(/tmp) (C(project-config.json),
    the organization's token included), re-enters that session by itself when it starts, and has
    no reset endpoint. So it is recycled by restarting it with a clean data directory and a clean
    C(/tmp). This module stops the gateway's service (its stop signal, then C(SIGKILL) after the
    service's stop timeout), wipes O(data_dir) and O(tmp_dir) and checks that they hold nothing,
    starts the service again, waits for the health check (C(GET) O(health_path) answering 200),
    and checks once more that the data directory holds no file (empty directories are allowed, as a
    gateway lays them out on start) and that O(tmp_dir) holds no C(project-config.json).
  - It never fails for the gateway's own faults. RV(verified) says whether the gateway may return
    to the pool; when it is false, RV(reason) says why, for the quarantine. A gateway whose
    metadata names no O(data_dir) or no O(service) is not verified.
  - With O(state=stopped) it only stops the gateway, and with O(state=started) it only starts it
    (when it is not running) and waits for its health check, touching nothing on disk. A release
    stops the gateway before it takes the snapshot, so that what the gateway saves when it stops is
    in the snapshot, and starts it again (it re-enters its session) when the snapshot fails.
  - Runs on the gateway's host.
  - In check mode nothing is stopped or wiped, and the gateway is predicted scrubbed.
extends_documentation_fragment:
  - demiurge.gateway.controller
  - demiurge.gateway.attributes
attributes:
  diff_mode:
    support: none
  idempotent:
    support: partial
    details:
      - With O(state=recycled) every call restarts the gateway; that is its purpose.
      - V(stopped) and V(started) change nothing when the gateway already is so.
options:
  name:
    description: The gateway's name, for the messages.
    type: str
    required: true
  api_url:
    description: Base URL of the gateway's API.
    type: str
    required: true
  data_dir:
    description: The gateway's data directory on its host (its C(/data)). Without it the gateway is not verified.
    type: path
  tmp_dir:
    description:
      - The directory the gateway sees as its C(/tmp) (its private C(/tmp)), as its pool metadata
        records it (C(tmp_dir)).
      - Without it only the data directory is scrubbed, which does not clear a session the gateway
        keeps in its C(/tmp).
    type: path
  service:
    description:
      - How the gateway's service is stopped and started, as its pool metadata records it.
      - Key C(daemon), the options of M(demiurge.gateway.daemon) (C(name), C(argv), C(pidfile),
        C(log_file), C(wait_port), ...), for a process that module supervises, as the
        C(gateway_standin) role registers it.
      - Key C(systemd_unit), a unit name, for a gateway run by systemd (C(systemctl stop) and C(start)).
      - Without either, the gateway is not verified.
    type: dict
    default: {}
  health_path:
    description: The gateway's health check path.
    type: str
    default: /collab/ping
  timeout:
    description: Seconds to wait for one health check answer.
    type: float
    default: 5
  health_timeout:
    description: Seconds to wait for the gateway to be healthy after its restart.
    type: float
    default: 30
  state:
    description:
      - V(recycled) stops, scrubs, starts and verifies the gateway.
      - V(stopped) only stops it; V(started) only starts it and waits for its health check, and
        fails when it does not answer within O(health_timeout).
    type: str
    choices: [recycled, stopped, started]
    default: recycled
    version_added: 0.5.0
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
- name: Recycle the gateway an organization left
  demiurge.gateway.gateway_recycle:
    name: "{{ allocation.gateway_name }}"
    api_url: "{{ allocation.api_url }}"
    data_dir: "{{ allocation.gateway_metadata.data_dir }}"
    tmp_dir: "{{ allocation.gateway_metadata.tmp_dir }}"
    service: "{{ allocation.gateway_metadata.service }}"
  register: recycled

- name: Return it to the pool only when it was scrubbed
  demiurge.gateway.pool_gateway:
    name: "{{ allocation.gateway_name }}"
    status: "{{ 'ready' if recycled.verified else 'quarantined' }}"
    status_reason: "{{ omit if recycled.verified else recycled.reason }}"
"""

RETURN = r"""
verified:
  description: Whether the gateway was restarted with an empty data directory and C(/tmp), answers its health check and re-entered no session.
  returned: always
  type: bool
  sample: true
healthy:
  description: Whether the gateway answered its health check after the restart.
  returned: always
  type: bool
  sample: true
reason:
  description: Why the gateway was not scrubbed; null when it was.
  returned: always
  type: str
  sample: "Gateway gw-003 was not scrubbed: it did not answer GET /collab/ping with 200 within 30.0 s after its restart"
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._gateway_api import GATEWAY_RECYCLE
from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module


def main():
    run_module(GATEWAY_RECYCLE)


if __name__ == "__main__":
    main()
