"""Stand-in for the two endpoints of the platform's API that gateways call, for the local stack
and the tests. Each answers from the pool database through the routine the platform's own
endpoint calls, so the schema is exercised exactly as in production:
  POST /gateway/config   {"tmp_handshake_token": <uuid>} -> 200 {"organization_id", "allocation_id",
                         "gateway_id", "gateway_name"} from func_organizations_gateways_get(token);
                         403 for a token that is unknown, used or past its allocation's lease
Needs psycopg (the controller's Python has it). The database comes from the PG* environment
variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE), as libpq reads them.
"""

import argparse
import json
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg


def handler_for(conninfo):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            if self.path != "/gateway/config":
                return self._answer(404, {"error": "not found"})
            try:
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                token = str(uuid.UUID(request["tmp_handshake_token"]))
            except (ValueError, KeyError, TypeError):
                return self._answer(400, {"error": "tmp_handshake_token (a UUID) is required"})
            try:
                with psycopg.connect(**conninfo) as conn:
                    row = conn.execute("SELECT organization_id, allocation_id, gateway_id, gateway_name "
                                       "FROM func_organizations_gateways_get(%s)", (token,)).fetchone()
            except psycopg.Error as exc:
                return self._answer(503, {"error": "pool database: %s" % exc})
            if row is None:
                return self._answer(403, {"error": "unknown, used or expired handshake token"})
            return self._answer(200, dict(zip(("organization_id", "allocation_id", "gateway_id", "gateway_name"),
                                              (str(value) for value in row))))

        def _answer(self, status, payload):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *args):
            print("%s %s" % (self.address_string(), fmt % args), flush=True)

    return Handler


def main():
    parser = argparse.ArgumentParser(description="Platform API stand-in")
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    conninfo = {"connect_timeout": 5, "autocommit": True, "application_name": "demiurge.platform-api-standin"}
    ThreadingHTTPServer((args.listen, args.port), handler_for(conninfo)).serve_forever()


if __name__ == "__main__":
    main()
