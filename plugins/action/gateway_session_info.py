# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs demiurge.gateway.gateway_session_info in-process when the task runs on the controller."""

from __future__ import annotations

from ansible_collections.demiurge.gateway.plugins.module_utils._gateway_api import GATEWAY_SESSION_INFO
from ansible_collections.demiurge.gateway.plugins.plugin_utils._local_action import LocalFirstAction


class ActionModule(LocalFirstAction):
    DEFINITION = GATEWAY_SESSION_INFO
