#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: edge_route_info
short_description: List the organization routes on an nginx edge
version_added: 0.1.0
description:
  - Reads the route shards under O(config_root) (see M(demiurge.gateway.edge_route)) and lists every
    organization's route with its owner, host name and upstream, for drift checks.
  - Says whether a job died while it held the edge's lock, applying route changes (RV(unfinished)).
    The routes listed are then on disk but may not be live, until the next
    M(demiurge.gateway.edge_route) call on the edge, which may name no route at all.
extends_documentation_fragment:
  - demiurge.gateway.controller
  - demiurge.gateway.attributes.INFO_MODULE
options:
  config_root:
    description: The edge's nginx prefix.
    type: path
    required: true
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
- name: List the routes on an edge
  demiurge.gateway.edge_route_info:
    config_root: "{{ 'dev-001' | demiurge.gateway.state_path('nginx') }}"
  register: edge_routes
"""

RETURN = r"""
routes:
  description: Every route on the edge.
  returned: always
  type: list
  elements: dict
  sample: [{"organization": "0b5e9b7c-1a2b-4c3d-8e9f-001122334455", "owner": "5d0f6c1e-3b7a-4e51-9a55-0e6f1c2d3b4a",
            "host": "org-0b5e9b7c-1a2b-4c3d-8e9f-001122334455.dev-001.demiurge.test", "upstream": "127.0.0.1:15501",
            "path": "/srv/edge/nginx/routes/orgs-0b.conf"}]
unfinished:
  description: Whether a job died while applying route changes on the edge, so the routes on disk may not all be live.
  returned: always
  type: bool
  sample: false
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._edge_route import EDGE_ROUTE_INFO
from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module


def main():
    run_module(EDGE_ROUTE_INFO)


if __name__ == "__main__":
    main()
