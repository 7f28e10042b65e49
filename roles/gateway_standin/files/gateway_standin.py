"""Stand-in for the platform's gateway (packages/app-gateway, a Node service), for the local stack
and the tests. It keeps the real gateway's contract:
  GET  /collab/ping         health: 200 (503 while --unhealthy-file exists)
  POST /collab/start        the handshake, {"tmp_handshake_token": <uuid>}: the gateway exchanges the
                            token for its organization's configuration at the platform's API
                            (POST <config-url>/gateway/config), then loads the organization's state
                            from its data directory into memory (500 while --fail-handshake-file exists)
  no reset endpoint         the organization's state lives in memory until the process ends: the
                            gateway is recycled by restarting it with a clean data directory
  any other request         200 {"gateway": <name>, "host": <Host>, "path": <path>}
  WebSocket upgrade         101, then every text frame is echoed back as "<name>: <text>"
Every response carries the header X-Gateway: <name>, so a test sees which gateway served it.
One path exists only in the stand-in, for the tests' invariant checks:
  GET  /standin/state       {"organization": <uuid or null>, "state": <what it holds in memory>}
Standard library only.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import struct
import urllib.error
import urllib.request
import uuid

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Gateway:
    def __init__(self, name, data_dir, config_url, unhealthy_file, fail_handshake_file):
        self.name, self.data_dir, self.config_url = name, data_dir, config_url
        self.unhealthy_file, self.fail_handshake_file = unhealthy_file, fail_handshake_file
        self.organization, self.state = None, None

    async def handle(self, reader, writer):
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
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
        if headers.get("upgrade", "").lower() == "websocket":
            await self._websocket(reader, writer, headers)
            return False
        status, payload = self.route(method, path.split("?", 1)[0], headers, body)
        data = json.dumps(payload).encode()
        writer.write(("HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nX-Gateway: %s\r\n\r\n"
                      % (status, len(data), self.name)).encode() + data)
        await writer.drain()
        return headers.get("connection", "").lower() != "close"

    def route(self, method, path, headers, body):
        if path == "/collab/ping":
            if self.unhealthy_file and os.path.exists(self.unhealthy_file):
                return "503 Service Unavailable", {"status": "unhealthy"}
            return "200 OK", {"status": "ok"}
        if path == "/collab/start" and method == "POST":
            return self.start(body)
        if path == "/standin/state":
            return "200 OK", {"gateway": self.name, "organization": self.organization, "state": self.state}
        return "200 OK", {"gateway": self.name, "host": headers.get("host"), "path": path}

    def start(self, body):
        if self.fail_handshake_file and os.path.exists(self.fail_handshake_file):
            return "500 Internal Server Error", {"error": "handshake failure injected"}
        try:
            token = str(uuid.UUID(json.loads(body or b"{}")["tmp_handshake_token"]))
        except (ValueError, KeyError, TypeError):
            return "400 Bad Request", {"error": "tmp_handshake_token (a UUID) is required"}
        if self.organization is not None:
            return "409 Conflict", {"error": "already serving an organization; restart the gateway to recycle it"}
        if not self.config_url:
            return "503 Service Unavailable", {"error": "no platform API configured (--config-url)"}
        try:
            request = urllib.request.Request(self.config_url.rstrip("/") + "/gateway/config", method="POST",
                                             data=json.dumps({"tmp_handshake_token": token}).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=5) as response:
                config = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return "403 Forbidden", {"error": "the platform refused the token: HTTP %d" % exc.code}
        except (OSError, ValueError) as exc:
            return "502 Bad Gateway", {"error": "the platform's API did not answer: %s" % exc}
        self.organization = config["organization_id"]
        self.state = self._load_state()
        return "200 OK", {"gateway": self.name, "started": True}

    def _load_state(self):
        """What the real gateway keeps in memory: the state file (permissions, OAuth and container
        tokens) and the list of projects, as found in the data directory at the handshake."""
        if not self.data_dir:
            return None
        state = {"projects": sorted(os.listdir(os.path.join(self.data_dir, "projects")))
                 if os.path.isdir(os.path.join(self.data_dir, "projects")) else []}
        try:
            with open(os.path.join(self.data_dir, "state.json")) as handle:
                state["state_file"] = handle.read()
        except OSError:
            state["state_file"] = None
        return state

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
    parser = argparse.ArgumentParser(description="Gateway stand-in")
    parser.add_argument("--name", required=True)
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--config-url", help="the platform's API, where handshake tokens are exchanged (without it, "
                        "every handshake fails)")
    parser.add_argument("--unhealthy-file", default=None, help="answer /collab/ping with 503 while this file exists")
    parser.add_argument("--fail-handshake-file", default=None, help="answer /collab/start with 500 while this file exists")
    args = parser.parse_args()
    if args.data_dir:
        os.makedirs(os.path.join(args.data_dir, "projects"), mode=0o700, exist_ok=True)
    gateway = Gateway(args.name, args.data_dir, args.config_url, args.unhealthy_file, args.fail_handshake_file)

    async def serve():
        server = await asyncio.start_server(gateway.handle, args.listen, args.port)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
