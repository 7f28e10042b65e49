# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

Minimal PowerDNS Authoritative HTTP API client on ansible-core's open_url,
with bounded retries for transient failures.
"""

from __future__ import annotations

import json
import random
import socket
import time

from ansible.module_utils.basic import env_fallback
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.parse import quote, urlencode

from ansible_collections.demiurge.gateway.plugins.module_utils._http import open_url
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import (
    InvalidInputError,
    PdnsAuthError,
    PdnsError,
    PdnsNotFoundError,
    PdnsUnreachableError,
)

_BACKOFF_SECONDS = 0.2


def pdns_argument_spec():
    """Connection options shared by every PowerDNS module (documented in doc_fragments/pdns_api.py)."""
    return {
        "api_url": {"type": "str", "required": True, "fallback": (env_fallback, ["PDNS_API_URL"])},
        "api_key": {"type": "str", "required": True, "no_log": True, "fallback": (env_fallback, ["PDNS_API_KEY"])},
        "server_id": {"type": "str", "default": "localhost"},
        "validate_certs": {"type": "bool", "default": True},
        "timeout": {"type": "float", "default": 10},
        "retries": {"type": "int", "default": 5},
    }


def _message(body):
    try:
        return json.loads(body).get("error") or body
    except (ValueError, AttributeError):
        return body


class PdnsClient:
    def __init__(self, api_url, api_key, server_id="localhost", validate_certs=True, timeout=10, retries=5):
        if not api_url.startswith(("http://", "https://")):
            raise InvalidInputError("api_url %r is not an http(s) URL" % api_url,
                                    hint="Give the webserver's base URL, for example http://127.0.0.1:8081")
        self.api_url = api_url.rstrip("/")
        self.api_key = api_key
        self.server_id = server_id
        self.validate_certs = validate_certs
        self.timeout = timeout
        self.retries = max(0, retries)

    @classmethod
    def from_params(cls, params):
        return cls(params["api_url"], params["api_key"], params["server_id"], params["validate_certs"],
                   params["timeout"], params["retries"])

    def zone_path(self, zone):
        return "/servers/%s/zones/%s" % (quote(self.server_id, safe=""), quote(zone, safe=""))

    def server_path(self, tail=""):
        return "/servers/%s%s" % (quote(self.server_id, safe=""), tail)

    def request(self, method, path, body=None, query=None):
        """Send one API call; return the decoded JSON body (None when empty)."""
        url = "%s/api/v1%s" % (self.api_url, path)
        if query:
            url += "?" + urlencode(query)
        data = None if body is None else json.dumps(body)
        headers = {"X-API-Key": self.api_key, "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        attempt, maybe_applied = 0, False
        while True:
            try:
                response = open_url(url, method=method, data=data, headers=headers, timeout=self.timeout,
                                    validate_certs=self.validate_certs)
                raw = response.read()
                return json.loads(raw) if raw else None
            except HTTPError as exc:
                status, text = exc.code, exc.read().decode("utf-8", "replace")
                if status < 500 or attempt >= self.retries:
                    error = self._http_error(method, url, status, text)
                    # PowerDNS answered with an error: it applied nothing, unless an earlier attempt may have.
                    error.details["outcome"] = "unknown" if maybe_applied else "not_applied"
                    raise error
            except (URLError, socket.timeout, ConnectionError) as exc:
                reason = getattr(exc, "reason", exc)
                # Refused: nothing reached PowerDNS. A timeout or a connection lost after sending may
                # have been applied (PowerDNS applies a PATCH it received while stopped once it resumes).
                sent = not isinstance(reason, ConnectionRefusedError)
                maybe_applied = maybe_applied or (sent and method != "GET")
                if attempt >= self.retries:
                    raise PdnsUnreachableError(
                        "PowerDNS API at %s did not answer %s %s after %d attempts: %s%s"
                        % (self.api_url, method, path, attempt + 1, reason,
                           "" if method == "GET" else
                           ("; the change may still be applied" if maybe_applied else "; nothing was sent")),
                        hint="Check api_url and that pdns_server runs with webserver=yes and api=yes",
                        outcome="unknown" if maybe_applied else "not_applied",
                    )
            # Jittered: writers that collided (SQLite answers 500 "database is locked") must not
            # retry at the same instants and collide again.
            backoff = _BACKOFF_SECONDS * (2 ** attempt)
            time.sleep(backoff / 2 + random.uniform(0, backoff / 2))
            attempt += 1

    def _http_error(self, method, url, status, text):
        message = _message(text)
        if status in (401, 403):
            return PdnsAuthError("PowerDNS at %s refused the API key (HTTP %d)" % (self.api_url, status),
                                 hint="Check api_key (or PDNS_API_KEY) against the server's api-key setting",
                                 status=status)
        if status == 404:
            return PdnsNotFoundError("%s %s: not found (%s)" % (method, url, message), status=status, body=message)
        return PdnsError("%s %s failed with HTTP %d: %s" % (method, url, status, message), status=status, body=message)

    def flush_cache(self, name):
        """Drop cached answers (and cached negative answers) for name and below."""
        self.request("PUT", self.server_path("/cache/flush"), query={"domain": name})
