# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

The one place where collection errors become fail_json.
"""

from __future__ import annotations

import traceback

from ansible_collections.demiurge.gateway.plugins.module_utils._errors import GatewayError


def run_module(module, body):
    """Call body(module) -> result dict and exit; map GatewayError to fail_json."""
    try:
        result = body(module)
    except GatewayError as exc:
        extra = {key: value for key, value in exc.details.items() if value is not None}
        module.fail_json(msg=str(exc), error=type(exc).__name__, exception=traceback.format_exc(), **extra)
    module.exit_json(**result)
