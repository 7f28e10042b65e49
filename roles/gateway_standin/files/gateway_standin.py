"""Stand-in for the platform's gateway (a Node service), for the local stack and the tests.

Keeps the parts of the gateway's contract the collection relies on:
  GET  /health              200 {"status": "ok", "gateway": <name>} (503 when --unhealthy-file exists)
  POST /collab/start        the allocation handshake: {"organization": <uuid>, "handshake_token": <str>}
                            (500 while --fail-handshake-file exists)
  POST /collab/reset        end the organization's session and wipe its data
  any other request         200 {"gateway": <name>, "host": <Host>, "path": <path>}
  WebSocket upgrade         101, then every text frame is echoed back as "<name>: <text>"
Every response carries the header X-Gateway: <name>, so a test sees which gateway served it.
Standard library only.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import shutil
import struct

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Gateway:
    def __init__(self, name, data_dir, unhealthy_file, fail_handshake_file):
        self.name, self.data_dir = name, data_dir
        self.unhealthy_file, self.fail_handshake_file = unhealthy_file, fail_handshake_file
        self.organization = None

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
        if path == "/health":
            if self.unhealthy_file and os.path.exists(self.unhealthy_file):
                return "503 Service Unavailable", {"status": "unhealthy", "gateway": self.name}
            return "200 OK", {"status": "ok", "gateway": self.name, "organization": self.organization}
        if path == "/collab/reset" and method == "POST":
            # The next organization must never see this one's data.
            self.organization = None
            if self.data_dir:
                shutil.rmtree(self.data_dir, ignore_errors=True)
                os.makedirs(os.path.join(self.data_dir, "projects"), mode=0o700, exist_ok=True)
            return "200 OK", {"gateway": self.name, "reset": True}
        if path == "/collab/start" and method == "POST":
            if self.fail_handshake_file and os.path.exists(self.fail_handshake_file):
                return "500 Internal Server Error", {"error": "handshake failure injected"}
            try:
                request = json.loads(body or b"{}")
                organization, token = request["organization"], request["handshake_token"]
            except (ValueError, KeyError, TypeError):
                return "400 Bad Request", {"error": "organization and handshake_token are required"}
            if not token:
                return "400 Bad Request", {"error": "empty handshake token"}
            self.organization = organization
            return "200 OK", {"gateway": self.name, "organization": organization, "started": True}
        return "200 OK", {"gateway": self.name, "host": headers.get("host"), "path": path}

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
    parser.add_argument("--unhealthy-file", default=None, help="answer /health with 503 while this file exists")
    parser.add_argument("--fail-handshake-file", default=None, help="answer /collab/start with 500 while this file exists")
    args = parser.parse_args()
    if args.data_dir:
        os.makedirs(os.path.join(args.data_dir, "projects"), mode=0o700, exist_ok=True)
    gateway = Gateway(args.name, args.data_dir, args.unhealthy_file, args.fail_handshake_file)

    async def serve():
        server = await asyncio.start_server(gateway.handle, args.listen, args.port)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
