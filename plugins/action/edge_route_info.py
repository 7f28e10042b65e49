# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs demiurge.gateway.edge_route_info in-process when the task runs on the controller."""

from __future__ import annotations

from ansible_collections.demiurge.gateway.plugins.module_utils._edge_route import EDGE_ROUTE_INFO
from ansible_collections.demiurge.gateway.plugins.plugin_utils._local_action import LocalFirstAction


class ActionModule(LocalFirstAction):
    DEFINITION = EDGE_ROUTE_INFO
