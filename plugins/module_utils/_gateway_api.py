# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

The gateway's own API, as the allocation life cycle uses it: health, the
handshake that starts an organization's session, and the reset on release.
"""

from __future__ import annotations

import json
import secrets
import time

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError

from ansible_collections.demiurge.gateway.plugins.module_utils._dns_names import organization_label
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import GatewayError
from ansible_collections.demiurge.gateway.plugins.module_utils._http import open_url
from ansible_collections.demiurge.gateway.plugins.module_utils._journal import journal_argument_spec, journaled
from ansible_collections.demiurge.gateway.plugins.module_utils._module import ModuleDef


class GatewayApiError(GatewayError):
    """The gateway refused or did not answer."""


def _call(api_url, method, path, body, timeout):
    url = api_url.rstrip("/") + path
    try:
        response = open_url(url, method=method, data=None if body is None else json.dumps(body),
                            headers={"Content-Type": "application/json"}, timeout=timeout)
        return response.getcode(), json.loads(response.read() or b"{}")
    except HTTPError as exc:
        return exc.code, {"error": exc.read().decode("utf-8", "replace")[:500]}
    except (URLError, OSError) as exc:
        raise GatewayApiError("Gateway at %s did not answer %s %s: %s" % (api_url, method, path, getattr(exc, "reason", exc)),
                              hint="Check that the gateway process runs and api_url is right")


def health(api_url, timeout):
    """(healthy, organization the gateway serves) from GET /health; (False, None) when it does not answer."""
    try:
        status, body = _call(api_url, "GET", "/health", None, timeout)
    except GatewayApiError:
        return False, None
    return status == 200, body.get("organization")


def gateway_session(call):
    params = call.params
    organization = organization_label(params["organization"])[len("org-"):]
    api_url, timeout = params["api_url"], params["timeout"]
    healthy, serving = health(api_url, timeout)
    if params["state"] == "started":
        if serving == organization:
            return {"changed": False, "healthy": healthy, "organization": serving}
        if not call.check_mode:
            # The token only has to be unguessable and used once; the gateway presents it back.
            token = params["handshake_token"] or secrets.token_urlsafe(30)
            status, body = _call(api_url, "POST", "/collab/start",
                                 {"organization": organization, "handshake_token": token}, timeout)
            if status != 200:
                raise GatewayApiError("Handshake with gateway at %s for organization %s failed: HTTP %d %s"
                                      % (api_url, organization, status, body.get("error", "")),
                                      hint="See the gateway's log; the allocation is rolled back", status=status)
        return {"changed": True, "healthy": True, "organization": organization,
                "diff": {"before": {"organization": serving}, "after": {"organization": organization}}}
    # reset: end the organization's session, then wait for the gateway to be healthy again.
    changed = serving is not None
    if changed and not call.check_mode:
        status, body = _call(api_url, "POST", "/collab/reset", {"organization": organization}, timeout)
        if status != 200:
            raise GatewayApiError("Reset of gateway at %s failed: HTTP %d %s" % (api_url, status, body.get("error", "")),
                                  hint="Quarantine the gateway and look at its log", status=status)
    deadline = time.monotonic() + params["health_timeout"]
    while not call.check_mode:
        healthy, serving = health(api_url, timeout)
        if healthy or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return {"changed": changed, "healthy": healthy, "organization": None,
            "diff": {"before": {"organization": serving if not changed else organization}, "after": {"organization": None}}}


def session_argument_spec():
    spec = journal_argument_spec()
    spec.update({
        "api_url": {"type": "str", "required": True},
        "organization": {"type": "str", "required": True},
        "state": {"type": "str", "default": "started", "choices": ["started", "reset"]},
        "handshake_token": {"type": "str", "no_log": True},
        "timeout": {"type": "float", "default": 5},
        "health_timeout": {"type": "float", "default": 10},
    })
    return spec


GATEWAY_SESSION = ModuleDef(session_argument_spec, journaled(gateway_session))
