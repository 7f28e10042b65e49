"""Script the PowerDNS HTTP exchange for unit tests: each expected call and its answer, in order."""

import io
import json

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError


class Call:
    def __init__(self, method, url, body=None, status=200, answer=None, error=None):
        self.method, self.url, self.body = method, url, body
        self.status, self.answer, self.error = status, answer, error


class ScriptedHttp:
    """Stands in for open_url; asserts method, URL, API key header and JSON body of every call."""

    def __init__(self, api_key, calls):
        self.api_key = api_key
        self.calls = list(calls)
        self.seen = []

    def __call__(self, url, method=None, data=None, headers=None, **kwargs):
        assert self.calls, "unexpected extra call %s %s" % (method, url)
        call = self.calls.pop(0)
        self.seen.append((method, url))
        assert (method, url) == (call.method, call.url)
        assert headers["X-API-Key"] == self.api_key
        assert "validate_certs" in kwargs
        if call.body is None:
            assert data is None
        else:
            assert headers["Content-Type"] == "application/json"
            assert json.loads(data) == call.body
        if call.error is not None:
            raise call.error
        payload = b"" if call.answer is None else json.dumps(call.answer).encode()
        if call.status >= 400:
            raise HTTPError(url, call.status, "error", {}, io.BytesIO(payload))
        return io.BytesIO(payload)

    def assert_done(self):
        assert not self.calls, "calls not made: %s" % [(c.method, c.url) for c in self.calls]


def refused():
    return URLError(ConnectionRefusedError(111, "Connection refused"))
