# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

open_url builds a TLS context, loading the CA bundle, for every request unless
given one (about 20 ms each, even for plain http). Build each kind once.
"""

from __future__ import annotations

import ssl

from ansible.module_utils.urls import Request, make_context

_CONTEXTS = {}


def tls_context(url, validate_certs=True):
    """Context to pass to open_url: never used for http://, built once per kind for https://."""
    key = "plain" if url.startswith("http://") else ("verify" if validate_certs else "no-verify")
    if key not in _CONTEXTS:
        _CONTEXTS[key] = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT) if key == "plain" else make_context(validate_certs=validate_certs)
    return _CONTEXTS[key]


def open_url(url, method="GET", data=None, headers=None, timeout=10, validate_certs=True, follow_redirects="none"):
    """ansible's Request.open with a prepared TLS context; the one HTTP entry point of the collection."""
    return Request().open(method, url, data=data, headers=headers, timeout=timeout, validate_certs=validate_certs,
                          follow_redirects=follow_redirects, context=tls_context(url, validate_certs))
