"""Stand-in for the platform's gateway (packages/app-gateway at cd7ceccc, a Node service), for the
local stack and the tests. It behaves as the real gateway does, flaws included
(../shared/realgw/README.md of the project, docs/gateway-contract.md):
- configured by the same six environment variables (GATEWAY_ID, GATEWAY_TOKEN, GATEWAY_HMAC_SECRET,
  SERVER_BIND, GANYMEDE_FQDN, GATEWAY_SCRIPTS_DIR), all required, and the platform API's CA from
  NODE_EXTRA_CA_CERTS; it prints all six, secrets included, at start;
- it listens, then reports ready (POST https://$GANYMEDE_FQDN/gateway/ready, bearer GATEWAY_TOKEN),
  retried every 5 s until a 2xx; only then does it re-enter the session it finds in
  <tmp>/project-config.json, organization token included;
- GET /collab/ping: 200 {} (while it listens, ready report or not);
- POST /collab/start {"tmp_handshake_token": <uuid>}: 400 for a token that is not a UUID; it calls
  POST /gateway/config with the same body, chunked, over https; an unreachable API gives 500; it
  never checks that call's status: a refused token still ends in 200 {}; only an answer carrying
  organization_token makes it take the organization: it pulls the organization's data
  (POST /gateway/data/pull, bearer organization token; a failure gives 500) and writes the whole
  configuration to <tmp>/project-config.json; a second handshake overwrites the first;
- every other path, WebSocket upgrades included, gets 404 JSON.
Where it differs from the real gateway, and why:
- its /tmp is the directory --tmp-dir (the real one's is fixed: a private mount gives each its own)
  and it needs no vpn-config.json there;
- at the handshake it also loads what its data directory holds (state.json, projects/) into memory,
  as the platform's later gateways do from their store, so the tests can see what it would serve;
- faults for the tests: 503 from /collab/ping while --unhealthy-file exists, 500 from /collab/start
  while --fail-handshake-file exists;
- on SIGTERM, once it reported ready, it saves the edits it holds in memory only (see
  POST /standin/state) into its data directory (saved-on-stop.json) and exits, as the real one saves its state store; the real
  one saves only when that store was initialized, which its handshake path never does, so the
  stand-in's save is what proves that a release takes its snapshot after the gateway's own save;
- every response carries X-Gateway: <its name>, so a test sees which gateway nginx reached;
- paths for the tests only, under /standin/, which the real gateway does not use:
  GET /standin/state  {"gateway", "organization", "state"}: what it holds in memory;
  POST /standin/state {...}: merged into the organization's unsaved edits (state.edits), in memory
                      only until it stops;
  /standin/ws         a WebSocket that echoes each text frame as "<name>: <text>".
Standard library only.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import signal
import ssl
import struct
import sys
import urllib.error
import urllib.request
import uuid

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
REQUIRED = ("GATEWAY_ID", "GATEWAY_TOKEN", "GATEWAY_HMAC_SECRET", "SERVER_BIND", "GANYMEDE_FQDN", "GATEWAY_SCRIPTS_DIR")
READY_RETRY_SECONDS = 5
SESSION_FILE = "project-config.json"
SAVED_ON_STOP = "saved-on-stop.json"


def api_call(env, path, body, bearer=None, timeout=10):
    """(status, decoded body) of one call to the platform API, the body sent chunked as the gateway
    sends it. Raises OSError when the API cannot be reached."""
    context = ssl.create_default_context(cafile=env.get("NODE_EXTRA_CA_CERTS") or None)
    headers = {"Content-Type": "application/json"}
    if bearer:
        headers["Authorization"] = "Bearer " + bearer
    # An iterable body without a length goes chunked.
    request = urllib.request.Request("https://%s%s" % (env["GANYMEDE_FQDN"], path), method="POST",
                                     data=iter([json.dumps(body).encode()]), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {}


class Gateway:
    def __init__(self, name, env, tmp_dir, data_dir, unhealthy_file, fail_handshake_file):
        self.name, self.env, self.tmp_dir, self.data_dir = name, env, tmp_dir, data_dir
        self.unhealthy_file, self.fail_handshake_file = unhealthy_file, fail_handshake_file
        self.config, self.state = None, None

    @property
    def organization(self):
        return (self.config or {}).get("organization_id")

    # --- start -----------------------------------------------------------------------------

    async def report_ready(self):
        """POST /gateway/ready until a 2xx, every 5 s, as the real gateway does; then re-enter the
        session left in its /tmp."""
        while True:
            try:
                status, body = await asyncio.to_thread(api_call, self.env, "/gateway/ready",
                                                       {"gateway_id": self.env["GATEWAY_ID"]}, self.env["GATEWAY_TOKEN"])
                print("ready report: HTTP %d %s" % (status, json.dumps(body)), flush=True)
                if 200 <= status < 300:
                    break
            except OSError as exc:
                print("ready report failed: %s" % exc, flush=True)
            await asyncio.sleep(READY_RETRY_SECONDS)
        try:
            with open(os.path.join(self.tmp_dir, SESSION_FILE)) as handle:
                self.config = json.load(handle)
        except (OSError, ValueError):
            return
        self.state = self._load_state()
        print("Legacy single-project mode: re-entered organization %s" % self.organization, flush=True)

    # --- HTTP --------------------------------------------------------------------------------

    async def handle(self, reader, writer):
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def _one_request(self, reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, dummy = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
        path = path.split("?", 1)[0]
        if headers.get("upgrade", "").lower() == "websocket" and path == "/standin/ws":
            await self._websocket(reader, writer, headers)
            return False
        status, payload = await self.route(method, path, body)
        data = json.dumps(payload).encode()
        writer.write(("HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nX-Gateway: %s\r\n\r\n"
                      % (status, len(data), self.name)).encode() + data)
        await writer.drain()
        return headers.get("connection", "").lower() != "close"

    async def route(self, method, path, body):
        if path == "/collab/ping" and method == "GET":
            if self.unhealthy_file and os.path.exists(self.unhealthy_file):
                return "503 Service Unavailable", {"status": "unhealthy"}
            return "200 OK", {}
        if path == "/collab/start" and method == "POST":
            return await self.start(body)
        if path == "/standin/state" and method == "POST":
            if self.state is None:
                return "409 Conflict", {"error": "no organization"}
            self.state["edits"].update(json.loads(body or b"{}"))
        if path == "/standin/state":
            return "200 OK", {"gateway": self.name, "organization": self.organization, "state": self.state}
        return "404 Not Found", {"error": "Not found", "path": path}

    async def start(self, body):
        if self.fail_handshake_file and os.path.exists(self.fail_handshake_file):
            return "500 Internal Server Error", {"error": "handshake failure injected"}
        try:
            token = str(uuid.UUID(str(json.loads(body or b"{}")["tmp_handshake_token"])))
        except (ValueError, KeyError, TypeError):
            return "400 Bad Request", {"error": "tmp_handshake_token must be a UUID"}
        try:
            dummy, config = await asyncio.to_thread(api_call, self.env, "/gateway/config", {"tmp_handshake_token": token})
        except OSError as exc:
            return "500 Internal Server Error", {"error": str(exc)}
        # The real gateway's flaw, kept: the status is never checked; only the answer's shape counts.
        if "organization_token" not in config:
            return "200 OK", {}
        try:
            status, dummy = await asyncio.to_thread(api_call, self.env, "/gateway/data/pull", {},
                                                    config["organization_token"])
            if not 200 <= status < 300:
                raise OSError("data pull answered HTTP %d" % status)
        except OSError as exc:
            return "500 Internal Server Error", {"error": str(exc)}
        self.config = config
        path = os.path.join(self.tmp_dir, SESSION_FILE)
        with open(path, "w") as handle:
            json.dump(config, handle)
        self.state = self._load_state()
        return "200 OK", {}

    def _load_state(self):
        """What it serves from memory: the state file (permissions, OAuth and container tokens) and
        the projects its data directory holds."""
        projects = os.path.join(self.data_dir, "projects")
        state = {"projects": sorted(os.listdir(projects)) if os.path.isdir(projects) else []}
        try:
            with open(os.path.join(self.data_dir, "state.json")) as handle:
                state["state_file"] = handle.read()
        except OSError:
            state["state_file"] = None
        try:
            with open(os.path.join(self.data_dir, SAVED_ON_STOP)) as handle:
                state["edits"] = json.load(handle)["edits"]
        except (OSError, ValueError, KeyError):
            state["edits"] = {}
        return state

    def save_on_stop(self):
        if self.state is not None and self.state["edits"]:
            with open(os.path.join(self.data_dir, SAVED_ON_STOP), "w") as handle:
                json.dump({"organization": self.organization, "edits": self.state["edits"]}, handle)
        sys.exit(0)

    async def _websocket(self, reader, writer, headers):
        accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + WS_GUID).encode()).digest()).decode()
        writer.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: %s\r\nX-Gateway: %s\r\n\r\n" % (accept, self.name)).encode())
        await writer.drain()
        while True:
            opcode, payload = await read_frame(reader)
            if opcode == 0x8:  # close
                writer.write(frame(0x8, b""))
                await writer.drain()
                return
            if opcode == 0x1:
                writer.write(frame(0x1, ("%s: %s" % (self.name, payload.decode())).encode()))
                await writer.drain()


async def read_frame(reader):
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", await reader.readexactly(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", await reader.readexactly(8))[0]
    mask = await reader.readexactly(4) if second & 0x80 else b"\0\0\0\0"
    data = await reader.readexactly(length)
    return first & 0x0F, bytes(byte ^ mask[i % 4] for i, byte in enumerate(data))


def frame(opcode, payload, mask=None):
    """One final frame; clients must mask (pass 4 bytes), servers must not."""
    header = bytes([0x80 | opcode])
    length = len(payload)
    flag = 0x80 if mask else 0
    if length < 126:
        header += bytes([flag | length])
    elif length < 65536:
        header += bytes([flag | 126]) + struct.pack("!H", length)
    else:
        header += bytes([flag | 127]) + struct.pack("!Q", length)
    if mask:
        payload = mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return header + payload


def main():
    parser = argparse.ArgumentParser(description="Gateway stand-in (configured by the real gateway's environment)")
    parser.add_argument("--name", required=True)
    parser.add_argument("--tmp-dir", required=True, help="what the real gateway's private /tmp is")
    parser.add_argument("--data-dir", required=True, help="what the real gateway's /data is")
    parser.add_argument("--unhealthy-file", default=None, help="answer /collab/ping with 503 while this file exists")
    parser.add_argument("--fail-handshake-file", default=None, help="answer /collab/start with 500 while this file exists")
    args = parser.parse_args()
    missing = [name for name in REQUIRED if not os.environ.get(name)]
    if missing:
        sys.exit("The following environment variables are not defined: %s" % ", ".join(missing))
    env = dict(os.environ)
    # The real gateway's flaw, kept: its whole configuration, secrets included, goes to its output.
    for name in REQUIRED:
        print("%s=%s" % (name, env[name]), flush=True)
    bind = json.loads(env["SERVER_BIND"])[0]
    gateway = Gateway(args.name, env, args.tmp_dir, args.data_dir, args.unhealthy_file, args.fail_handshake_file)

    async def serve():
        server = await asyncio.start_server(gateway.handle, bind["host"], int(bind["port"]))
        async with server:
            await gateway.report_ready()
            # As the real one: its stop handler is installed only once it reported ready.
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, gateway.save_on_stop)
            await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
