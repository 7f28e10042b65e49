# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

One organization's route on an nginx edge: an entry in one of 256 shard files
in the edge's routes/ directory (picked by the first two hex digits of the org
id), fed to `map $host $demiurge_upstream`. Shards keep nginx's parse cost low:
at 10,000 organizations `nginx -t` takes 26 ms with 256 files against 87 ms
with one file per organization.

Every change runs under the edge's lock: rewrite the shard, `nginx -t` the whole
tree, reload, and prove the live configuration serves the route; any failure
puts the shard back as it was when the lock was taken (so other jobs' finished
changes stay) and reloads again.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import os
import re
import signal
import socket
import time

from ansible_collections.demiurge.gateway.plugins.module_utils._dns_names import canonical
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import GatewayError, InvalidInputError
from ansible_collections.demiurge.gateway.plugins.module_utils._journal import journal_argument_spec
from ansible_collections.demiurge.gateway.plugins.module_utils._module import ModuleDef
from ansible_collections.demiurge.gateway.plugins.module_utils._dns_names import organization_label

ROUTES_DIR = "routes"
LOCK_FILE = os.path.join("run", "routes.lock")
NGINX_PID_FILE = os.path.join("run", "nginx.pid")
# Response header the edge adds to every response: the upstream its live map chose.
UPSTREAM_HEADER = "X-Demiurge-Upstream"
_ENTRY_HEADER = re.compile(r"^# (org-[0-9a-f-]{36})(?: owner=(\S+))?$")
_SHARD_HEADER = "# Managed by demiurge.gateway.edge_route; do not edit."
_NGINX_WHERE = re.compile(r" in (/\S+):(\d+)")


class EdgeError(GatewayError):
    """nginx refused a change, or a reload did not take effect; the previous state is back."""

    outcome = "not_applied"


def parse_upstream(upstream):
    """host:port with an IP literal (nginx resolves names in a variable proxy_pass only with a resolver)."""
    match = re.match(r"^\[?([0-9A-Fa-f:.]+)\]?:(\d{1,5})\Z", str(upstream))
    try:
        address = ipaddress.ip_address(match.group(1)) if match else None
    except ValueError:
        address = None
    if address is None or not 0 < int(match.group(2)) < 65536:
        raise InvalidInputError("Upstream %r is not <ip>:<port>" % (upstream,),
                                hint="Give the gateway's address as an IP literal and port, for example 127.0.0.1:21001")
    host = "[%s]" % address.compressed if address.version == 6 else str(address)
    return "%s:%s" % (host, int(match.group(2)))


def render_entry(label, host, upstream, owner):
    """Two lines: who the entry belongs to, then the map line. A leading dot matches the
    name and every name below it (hostnames map)."""
    header = "# %s owner=%s" % (label, owner) if owner else "# %s" % label
    return "%s\n.%s %s;\n" % (header, host, upstream)


def parse_shard(text):
    """{label: entry text} of a shard file's contents."""
    entries, label = {}, None
    for line in (text or "").splitlines(True):
        match = _ENTRY_HEADER.match(line.rstrip("\n"))
        if match:
            label = match.group(1)
            entries[label] = line
        elif label is not None:
            entries[label] += line
    return entries


def unmanaged_lines(text):
    """Lines of a shard that render_shard did not write (a hand-written map line, say): each entry
    is its header and one map line, after the shard's own header."""
    lines = (text or "").splitlines()
    found, expect_map = [], False
    for number, line in enumerate(lines, 1):
        if expect_map:
            expect_map = False
            if line.startswith(".") and line.endswith(";"):
                continue
        elif (number == 1 and line == _SHARD_HEADER) or _ENTRY_HEADER.match(line):
            expect_map = number > 1
            continue
        found.append("%d: %s" % (number, line))
    return found


def render_shard(entries):
    if not entries:
        return None
    return _SHARD_HEADER + "\n" + "".join(entries[label] for label in sorted(entries))


def entry_owner(entry):
    match = _ENTRY_HEADER.match((entry or "").split("\n", 1)[0])
    return match.group(2) if match else None


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _write_atomic(path, text):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)


def _put(path, text):
    """Make path hold text, or not exist when text is None."""
    if text is None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    else:
        _write_atomic(path, text)


class EdgeLock:
    """Exclusive flock on the edge's lock file, shared by every job that changes routes."""

    def __init__(self, path, timeout):
        self.path, self.timeout, self.handle = path, timeout, None

    def __enter__(self):
        self.handle = open(self.path, "a")
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    self.handle.close()
                    raise EdgeError("Could not lock %s within %ss" % (self.path, self.timeout),
                                    hint="Another job holds the edge lock; retry, or raise lock_timeout")
                time.sleep(0.01)

    def __exit__(self, *exc_info):
        self.handle.close()


class Edge:
    """The nginx edge under one configuration root (prefix)."""

    def __init__(self, root, config, run_command, nginx_binary="/usr/sbin/nginx", listen_url=None, reload_timeout=10.0):
        self.root = root
        self.run_command = run_command
        self.config = config or os.path.join(root, "nginx.conf")
        self.nginx = nginx_binary
        self.listen_url = listen_url
        self.reload_timeout = reload_timeout
        if not os.path.isdir(os.path.join(root, ROUTES_DIR)):
            raise InvalidInputError("%s has no %s/ directory" % (root, ROUTES_DIR),
                                    hint="Prepare the edge with the demiurge.gateway.edge role first")

    def shard_path(self, label):
        return os.path.join(self.root, ROUTES_DIR, "orgs-%s.conf" % label[4:6])

    def route_entry(self, label):
        """The organization's entry text, or None."""
        return parse_shard(_read(self.shard_path(label))).get(label)

    def test(self):
        """None when nginx accepts the whole configuration, else its message."""
        rc, out, err = self.run_command([self.nginx, "-t", "-q", "-p", self.root, "-c", self.config])
        return None if rc == 0 else (err + out).strip()

    def master_pid(self):
        try:
            with open(os.path.join(self.root, NGINX_PID_FILE)) as handle:
                return int(handle.read().strip())
        except (OSError, ValueError):
            return None

    def accepting_workers(self):
        """Pids of the master's workers that still accept connections (a worker told to stop
        retitles itself "worker process is shutting down" and closes its listening sockets)."""
        master = self.master_pid()
        try:
            with open("/proc/%d/task/%d/children" % (master, master)) as handle:
                children = [int(pid) for pid in handle.read().split()]
        except (OSError, TypeError, ValueError):
            return set()
        accepting = set()
        for pid in children:
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as handle:
                    title = handle.read().decode("utf-8", "replace")
            except OSError:
                continue
            if "worker process" in title and "shutting down" not in title:
                accepting.add(pid)
        return accepting

    def wait_retired(self, workers):
        """True once none of workers accepts connections any more (they run the old configuration)."""
        deadline = time.monotonic() + self.reload_timeout
        while workers & self.accepting_workers():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def reload(self):
        pid = self.master_pid()
        if pid is None:
            raise EdgeError("nginx under %s is not running (no %s); the route was not changed" % (self.root, NGINX_PID_FILE),
                            hint="Start it with the demiurge.gateway.edge role")
        os.kill(pid, signal.SIGHUP)

    def served_upstream(self, host):
        """Upstream the live nginx maps host to ('' for none), via one HTTP request."""
        match = re.match(r"^http://([^/:]+):(\d+)", self.listen_url)
        with socket.create_connection((match.group(1), int(match.group(2))), timeout=2) as conn:
            conn.sendall(("HEAD /.well-known/demiurge-route HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host).encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                head += chunk
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, dummy, value = line.partition(":")
            if name.strip().lower() == UPSTREAM_HEADER.lower():
                return value.strip()
        return ""

    def wait_served(self, host, upstream):
        """True once the live configuration maps host to upstream ('' = unrouted)."""
        if not self.listen_url:
            return True
        deadline = time.monotonic() + self.reload_timeout
        while True:
            try:
                if self.served_upstream(host) == upstream:
                    return True
            except OSError:
                pass
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)


def ensure_route(params, check_mode, run_command, warn):
    """run_command(argv) -> (rc, stdout, stderr), as AnsibleModule.run_command; warn(message)."""
    label = organization_label(params["organization"])
    host = "%s.%s" % (label, canonical(params["domain"], "domain")[:-1])
    present = params["state"] == "present"
    if present and not params["upstream"]:
        raise InvalidInputError("state=present needs upstream", hint="Give the gateway's nginx_upstream (ip:port)")
    upstream = parse_upstream(params["upstream"]) if present else None
    edge = Edge(params["config_root"], params["config_file"], run_command, params["nginx_binary"],
                params["listen_url"], params["reload_timeout"])
    path = edge.shard_path(label)
    wanted = render_entry(label, host, upstream, params["owner"]) if present else None
    result = {"host": host, "path": path, "upstream": upstream}

    current = edge.route_entry(label)
    if current != wanted:
        _refuse_foreign(path, label, current, params)
        if not check_mode:
            with EdgeLock(os.path.join(params["config_root"], LOCK_FILE), params["lock_timeout"]):
                shard_before = _read(path)  # again, under the lock
                foreign = unmanaged_lines(shard_before)
                if foreign and not params["force"]:
                    raise InvalidInputError(
                        "Route shard %s holds lines edge_route did not write, which this change would drop: %s"
                        % (path, "; ".join(foreign[:3])),
                        hint="Move them to a file of your own outside %s/, or set force=true to drop them" % ROUTES_DIR)
                entries = parse_shard(shard_before)
                current = entries.get(label)
                if current != wanted:
                    _refuse_foreign(path, label, current, params)
                    if wanted is None:
                        del entries[label]
                    else:
                        entries[label] = wanted
                    _apply(edge, path, shard_before, render_shard(entries), host, upstream or "",
                           params["force"], warn)
    return dict(result, changed=current != wanted, diff={"before": current or "", "after": wanted or ""})


def _refuse_foreign(path, label, current, params):
    owner = entry_owner(current)
    if current is None or params["owner"] is None or params["force"] or owner == params["owner"]:
        return
    raise InvalidInputError("Route of %s in %s is owned by %s, not by %s" % (label, path, owner or "nobody", params["owner"]),
                            hint="Leave it to its owner, or set force=true to take it over", current_owner=owner)


def _apply(edge, path, previous, candidate, host, upstream, force, warn):
    _put(path, candidate)
    verdict = edge.test()
    if verdict is not None:
        _put(path, previous)
        before = edge.test()
        if before is None:
            raise EdgeError("nginx rejected the route for %s, the previous routes are back: %s" % (host, verdict),
                            hint="Fix the value named in nginx's message", nginx_error=verdict)
        if not force:
            raise EdgeError(
                "The nginx configuration under %s was already broken before this change, nothing was changed: %s"
                % (edge.root, before),
                hint="Fix or remove the file named in nginx's message, or set force=true to write the route anyway",
                nginx_error=before)
        # Forced: keep the route on disk; it goes live with the next reload after the foreign fix.
        _put(path, candidate)
        warn("Route for %s written but not live: nginx configuration is broken elsewhere: %s" % (host, before))
        return
    old_workers = edge.accepting_workers()
    try:
        edge.reload()
    except EdgeError:
        _put(path, previous)  # never leave a route on disk that is not live
        raise
    # Served by a new worker is not enough: until the old workers stop accepting (nginx waits
    # about 100 ms before telling them), a request can still meet the old configuration.
    if not (edge.wait_served(host, upstream) and edge.wait_retired(old_workers)):
        _put(path, previous)
        edge.reload()
        raise EdgeError(
            "nginx reloaded but did not serve the new route for %s within %ss; the previous routes are back"
            % (host, edge.reload_timeout),
            hint="Check the edge's error log for the reload failure")


def route_argument_spec():
    spec = journal_argument_spec()
    spec.update({
        "config_root": {"type": "path", "required": True},
        "config_file": {"type": "path"},
        "organization": {"type": "str", "required": True},
        "domain": {"type": "str", "required": True},
        "upstream": {"type": "str"},
        "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
        "owner": {"type": "str"},
        "force": {"type": "bool", "default": False},
        "listen_url": {"type": "str"},
        "nginx_binary": {"type": "path", "default": "/usr/sbin/nginx"},
        "reload_timeout": {"type": "float", "default": 10},
        "lock_timeout": {"type": "float", "default": 60},
    })
    return spec


EDGE_ROUTE = ModuleDef(
    route_argument_spec,
    lambda call: ensure_route(call.params, call.check_mode, call.run_command, call.warn),
    required_if=[("state", "present", ["upstream"])])


def list_routes(config_root):
    """[{organization, owner, host, upstream, path}] of every route on the edge."""
    routes = []
    directory = os.path.join(config_root, ROUTES_DIR)
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else ():
        if not (name.startswith("orgs-") and name.endswith(".conf")):
            continue
        path = os.path.join(directory, name)
        for label, entry in sorted(parse_shard(_read(path)).items()):
            fields = entry.split("\n", 1)[1].strip().rstrip(";").split()
            routes.append({"organization": label[len("org-"):], "owner": entry_owner(entry),
                           "host": fields[0].lstrip(".") if fields else None,
                           "upstream": fields[1] if len(fields) > 1 else None, "path": path})
    return routes


EDGE_ROUTE_INFO = ModuleDef(
    lambda: {"config_root": {"type": "path", "required": True}},
    lambda call: {"changed": False, "routes": list_routes(call.params["config_root"])})
