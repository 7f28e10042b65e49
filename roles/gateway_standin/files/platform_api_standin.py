"""Stand-in for the endpoints of the platform's API (app-ganymede) that gateways call, for the
local stack and the tests. It speaks as the platform does at the gateway's commit (cd7ceccc):
https only, bodies sized or chunked, the platform's answer shapes. Each answer comes from the pool
database through the routine the platform's own endpoint calls, so the schema is exercised as in
production.

  POST /gateway/config      {"tmp_handshake_token": <uuid>} -> 200 {organization_id, organization_name,
                            gateway_id, organization_token, projects, members} from
                            func_organizations_gateways_get(token), which records the exchange;
                            403 {"error": "Invalid handshake token"} for a token unknown, used or past
                            its allocation's lease
  POST /gateway/ready       Authorization: Bearer <the gateway's GATEWAY_TOKEN>, {"gateway_id": <id>}
                            -> 200 {"success": true}; 401 without a token that is this gateway's own,
                            403 {"error": "Gateway ID mismatch"} for another gateway's id
  POST /gateway/data/pull   Bearer <organization_token> -> {"success", "exists", "data", "timestamp"}
  POST /gateway/data/push   Bearer <organization_token>, {"timestamp", "data"} -> {"success", "stored_at",
                            "size_bytes"}; 400 without data
  POST /gateway/stop        Bearer <organization_token> -> {"success": true}

Where it differs from the platform, and why:
- a gateway's token is checked against the SHA-256 the collection registered in the gateway's pool
  metadata (token_sha256): the pool never holds the secret itself;
- a ready report is recorded (event gateway.ready_reported) and changes no gateway's status: the
  collection puts a gateway in the pool only after its own checks, so a report never returns to
  ready a gateway it quarantined, retired or allocated;
- /gateway/stop is recorded (event gateway.stop_requested) and ends nothing: releases are the
  collection's;
- the organization token is an HMAC of the organization, gateway and allocation under this
  stand-in's key, not the platform's JWT; organization names, projects and members come from
  nowhere (the pool has none): the name is org-<uuid>, the lists are empty;
- data pushed is kept under --data-dir as <organization>.json, as the platform does under its
  org-data; a pull answers from there;
- a fault for the tests: while --refuse-file exists, /gateway/config refuses every token (403, as
  the platform answers a token it does not know) without exchanging it.
Needs psycopg (the controller's Python has it). The database comes from the PG* environment
variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE), as libpq reads them.
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import json
import os
import ssl
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg

_MAX_BODY = 64 * 1024 * 1024


class BadRequest(Exception):
    pass


def read_body(rfile, headers):
    """The request's body, sized or chunked (the gateway sends chunked, without Content-Length)."""
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        chunks, total = [], 0
        while True:
            line = rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadRequest("malformed chunk size %r" % line[:40])
            if size == 0:
                while rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > _MAX_BODY:
                raise BadRequest("body over %d bytes" % _MAX_BODY)
            chunks.append(rfile.read(size))
            rfile.readline(1024)
    length = int(headers.get("Content-Length") or 0)
    if length > _MAX_BODY:
        raise BadRequest("body over %d bytes" % _MAX_BODY)
    return rfile.read(length)


class Tokens:
    """Organization tokens: what the platform signs as a JWT, here an HMAC under one key."""

    def __init__(self, key):
        self.key = key

    def issue(self, claims):
        payload = base64.urlsafe_b64encode(json.dumps(claims, sort_keys=True).encode()).decode().rstrip("=")
        return payload + "." + hmac.new(self.key, payload.encode(), hashlib.sha256).hexdigest()

    def verify(self, token):
        payload, dummy, signature = (token or "").partition(".")
        if not hmac.compare_digest(hmac.new(self.key, payload.encode(), hashlib.sha256).hexdigest(), signature):
            return None
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def handler_for(conninfo, tokens, data_dir, refuse_file):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802 (http.server's naming)
            try:
                body = json.loads(read_body(self.rfile, self.headers) or b"{}")
                if not isinstance(body, dict):
                    raise BadRequest("the body is not a JSON object")
            except (BadRequest, ValueError) as exc:
                return self._answer(400, {"error": "bad request: %s" % exc})
            routes = {"/gateway/config": self.config, "/gateway/ready": self.ready, "/gateway/data/pull": self.pull,
                      "/gateway/data/push": self.push, "/gateway/stop": self.stop}
            route = routes.get(self.path.split("?", 1)[0])
            if route is None:
                return self._answer(404, {"error": "Not found"})
            try:
                return self._answer(*route(body))
            except psycopg.Error as exc:
                return self._answer(500, {"error": "pool database: %s" % exc})

        def _bearer(self):
            scheme, dummy, token = self.headers.get("Authorization", "").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""

        def _organization(self):
            return tokens.verify(self._bearer())

        def config(self, body):
            try:
                token = str(uuid.UUID(str(body["tmp_handshake_token"])))
            except (ValueError, KeyError):
                return 403, {"error": "Invalid handshake token"}
            if refuse_file and os.path.exists(refuse_file):
                return 403, {"error": "Invalid handshake token"}
            with psycopg.connect(**conninfo) as conn:
                row = conn.execute("SELECT organization_id, allocation_id, gateway_id "
                                   "FROM func_organizations_gateways_get(%s)", (token,)).fetchone()
            if row is None:
                return 403, {"error": "Invalid handshake token"}
            organization, allocation, gateway = (str(value) for value in row)
            return 200, {"organization_id": organization, "organization_name": "org-" + organization,
                         "gateway_id": gateway, "projects": [], "members": [],
                         "organization_token": tokens.issue({"organization_id": organization, "gateway_id": gateway,
                                                             "allocation_id": allocation})}

        def ready(self, body):
            token = self._bearer()
            if not token:
                return 401, {"error": "Missing gateway token"}
            digest = hashlib.sha256(token.encode()).hexdigest()
            with psycopg.connect(**conninfo) as conn:
                row = conn.execute("SELECT id FROM gateways WHERE metadata->>'token_sha256' = %s", (digest,)).fetchone()
                if row is None:
                    return 401, {"error": "Invalid gateway token"}
                if str(body.get("gateway_id")) != str(row[0]):
                    return 403, {"error": "Gateway ID mismatch"}
                conn.execute("INSERT INTO gateway_events (kind, gateway_id, detail) VALUES ('gateway.ready_reported', %s, "
                             "jsonb_build_object('source', 'platform-api'))", (row[0],))
            return 200, {"success": True}

        def pull(self, body):
            claims = self._organization()
            if claims is None:
                return 401, {"error": "Invalid organization token"}
            try:
                with open(os.path.join(data_dir, claims["organization_id"] + ".json")) as handle:
                    stored = json.load(handle)
            except FileNotFoundError:
                return 200, {"success": True, "exists": False, "data": None, "timestamp": None}
            return 200, {"success": True, "exists": True, "data": stored["data"], "timestamp": stored["timestamp"],
                         "stored_at": stored["stored_at"]}

        def push(self, body):
            claims = self._organization()
            if claims is None:
                return 401, {"error": "Invalid organization token"}
            if not body.get("data"):
                return 400, {"success": False, "error": "Missing required field: data"}
            now = datetime.datetime.now(datetime.timezone.utc).isoformat()
            stored = {"organization_id": claims["organization_id"], "gateway_id": claims["gateway_id"],
                      "timestamp": body.get("timestamp") or now, "stored_at": now, "data": body["data"]}
            path = os.path.join(data_dir, claims["organization_id"] + ".json")
            fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(stored, handle)
            os.rename(path + ".tmp", path)
            return 200, {"success": True, "stored_at": now, "size_bytes": os.path.getsize(path)}

        def stop(self, body):
            claims = self._organization()
            if claims is None:
                return 401, {"error": "Invalid organization token"}
            with psycopg.connect(**conninfo) as conn:
                conn.execute("INSERT INTO gateway_events (kind, gateway_id, organization_id, allocation_id, detail) "
                             "VALUES ('gateway.stop_requested', %s, %s, %s, jsonb_build_object('source', 'platform-api'))",
                             (claims["gateway_id"], claims["organization_id"], claims["allocation_id"]))
            return 200, {"success": True}

        def _answer(self, status, payload):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *args):
            # The path and status only: never a header, so no token reaches the log.
            print("%s %s" % (self.address_string(), fmt % args), flush=True)

    return Handler


class TLSServer(ThreadingHTTPServer):
    """TLS on each connection's own thread: a client slow to handshake holds up no other."""

    daemon_threads = True

    def __init__(self, address, handler, context):
        super().__init__(address, handler)
        self.context = context

    def finish_request(self, request, client_address):
        request.settimeout(30)
        try:
            secure = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            super().finish_request(secure, client_address)
        finally:
            secure.close()


def main():
    parser = argparse.ArgumentParser(description="Platform API stand-in")
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True, help="its TLS certificate (signed by the CA the gateways trust)")
    parser.add_argument("--key", required=True)
    parser.add_argument("--token-key-file", required=True, help="the key its organization tokens are signed with")
    parser.add_argument("--data-dir", required=True, help="where pushed organization data is kept")
    parser.add_argument("--refuse-file", default=None, help="refuse every handshake token while this file exists")
    args = parser.parse_args()
    with open(args.token_key_file, "rb") as handle:
        tokens = Tokens(handle.read().strip())
    os.makedirs(args.data_dir, mode=0o700, exist_ok=True)
    conninfo = {"connect_timeout": 5, "autocommit": True, "application_name": "demiurge.platform-api-standin"}
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    TLSServer((args.listen, args.port), handler_for(conninfo, tokens, args.data_dir, args.refuse_file), context).serve_forever()


if __name__ == "__main__":
    main()
