# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Connection to the PowerDNS HTTP API; matches pdns_argument_spec() in module_utils/_pdns_client.py.
    DOCUMENTATION = r"""
options:
  api_url:
    description:
      - Base URL of the PowerDNS Authoritative webserver, without C(/api/v1).
      - Falls back to E(PDNS_API_URL).
    type: str
    required: true
  api_key:
    description:
      - Value of the C(X-API-Key) header (PowerDNS C(api-key) setting).
      - Falls back to E(PDNS_API_KEY).
    type: str
    required: true
  server_id:
    description: PowerDNS server id in API paths.
    type: str
    default: localhost
  validate_certs:
    description: Verify the TLS certificate of an C(https) O(api_url).
    type: bool
    default: true
  timeout:
    description: Seconds to wait for one HTTP response.
    type: float
    default: 10
  retries:
    description:
      - How many times to retry a request that failed transiently (connection refused or reset,
        timeout, HTTP 5xx such as SQLite's "database is locked" under concurrent writes), with
        jittered exponential backoff (about 6 s in all for 5 retries). HTTP 4xx answers are never retried.
        A failed write leaves nothing behind, so a retry is safe.
    type: int
    default: 5
notes:
  - Talks to the API with ansible-core's own URL helpers; no client library and no schema download.
"""
