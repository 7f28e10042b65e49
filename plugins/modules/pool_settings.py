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
      - Gateways that should always be ready for new organizations. Below it, alert
        C(DemiurgeGatewayReadyBelowFloor) fires.
    type: int
seealso:
  - module: demiurge.gateway.pool_info
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
- name: Keep at least five gateways ready
  demiurge.gateway.pool_settings:
    ready_floor: 5
"""

RETURN = r"""
settings:
  description: Every setting after the call.
  returned: always
  type: dict
  sample: {"ready_floor": 5}
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._pool_events import POOL_SETTINGS
from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module


def main():
    run_module(POOL_SETTINGS)


if __name__ == "__main__":
    main()
