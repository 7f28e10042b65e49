#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pool_settings
short_description: Set the gateway pool's settings
version_added: 0.3.0
description:
  - Sets the pool's settings in the pool database, where the metrics and alerts read them.
  - Settings not given are left as they are.
extends_documentation_fragment:
  - demiurge.gateway.controller
  - demiurge.gateway.pool_db
  - demiurge.gateway.attributes
options:
  ready_floor:
    description:
      - Gateways that should always be ready for new organizations (the platform's C(min_ready)).
        Below it the autoscaler creates gateways, and alert C(DemiurgeGatewayReadyBelowFloor) fires.
      - The pool starts with 2.
    type: int
    aliases: [min_ready]
  scale_step:
    description:
      - The autoscaler creates gateways in steps of this many (the pool starts with 3), and retires
        at most this many in one run. At least 1.
    type: int
  max_total:
    description:
      - The autoscaler never lets the pool's gateways (every one not retired) exceed this. The pool starts with 20.
    type: int
  host_capacity:
    description:
      - Gateways one gateway host runs at most, unless the host's C(demiurge_autoscale_host_capacity) says otherwise.
        The pool starts with 10.
    type: int
  scale_up_cooldown_seconds:
    description:
      - After creating gateways, the autoscaler waits this long before it creates more. The pool starts with 30.
    type: int
  scale_down_cooldown_seconds:
    description:
      - After creating or retiring gateways, the autoscaler waits this long before it retires any. The pool starts with 600.
    type: int
  idle_seconds:
    description:
      - Only a gateway ready (idle) for this long may be retired. The pool starts with 1800.
    type: int
  breaker_failures:
    description:
      - Consecutive failed creations that open the autoscaler's circuit breaker. At least 1; the pool starts with 3.
    type: int
  breaker_open_seconds:
    description:
      - How long the breaker stays open (the autoscaler creates nothing). After it, one more failed
        creation opens it again; a successful one closes it. The pool starts with 300.
    type: int
  gateway_fault_limit:
    description:
      - Allocations a gateway fails in a row through its own fault (its handshake, or no edge
        reaching it) before it is quarantined with the last cause. An allocation of it that becomes
        active starts the count again. At least 1; the pool starts with 3.
    type: int
    version_added: 0.5.0
seealso:
  - module: demiurge.gateway.pool_info
  - module: demiurge.gateway.pool_autoscale
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
- name: Keep at least five gateways ready
  demiurge.gateway.pool_settings:
    ready_floor: 5

- name: Scale in steps of four up to 40 gateways, and retire only gateways idle for an hour
  demiurge.gateway.pool_settings:
    min_ready: 2
    scale_step: 4
    max_total: 40
    idle_seconds: 3600
"""

RETURN = r"""
settings:
  description: Every setting after the call.
  returned: always
  type: dict
  sample: {"ready_floor": 5, "scale_step": 3, "max_total": 20, "host_capacity": 10, "scale_up_cooldown_seconds": 30,
           "scale_down_cooldown_seconds": 600, "idle_seconds": 1800, "breaker_failures": 3, "breaker_open_seconds": 300,
           "gateway_fault_limit": 3}
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._pool_events import POOL_SETTINGS
from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module


def main():
    run_module(POOL_SETTINGS)


if __name__ == "__main__":
    main()
