# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

One organization's route on an nginx edge: an entry in one of 256 shard files
in the edge's routes/ directory (picked by the first two hex digits of the org
id), fed to `map $host $demiurge_upstream`. Shards keep nginx's parse cost low:
at 10,000 organizations `nginx -t` takes 26 ms with 256 files against 87 ms
with one file per organization.

Every change runs under the edge's lock: rewrite the shards, `nginx -t` the whole
tree, reload, and prove the live configuration serves the change; any failure
puts the shards back as they were when the lock was taken (so other jobs'
finished changes stay) and reloads again. Changes are group-committed: each job
queues its change, and the lock's next holder applies all that are queued with
one validation and one reload (RouteQueue).
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import json
import os
import re
import signal
import socket
import time

from ansible_collections.demiurge.gateway.plugins.module_utils._dns_names import canonical
from ansible_collections.demiurge.gateway.plugins.module_utils._daemon import process_start_time
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import GatewayError, InvalidInputError, StorageError
from ansible_collections.demiurge.gateway.plugins.module_utils._journal import journal_argument_spec
from ansible_collections.demiurge.gateway.plugins.module_utils._module import ModuleDef, os_error
from ansible_collections.demiurge.gateway.plugins.module_utils._dns_names import organization_label

ROUTES_DIR = "routes"
LOCK_FILE = os.path.join("run", "routes.lock")
QUEUE_DIR = os.path.join("run", "route-queue")
# An answer nobody read within this time belongs to a job that died.
STALE_ANSWER_SECONDS = 3600
# A job waiting for the edge's lock or its answer looks again after this pause, growing to the last.
_FIRST_PAUSE, _LAST_PAUSE = 0.005, 0.05
NGINX_PID_FILE = os.path.join("run", "nginx.pid")
# Response header the edge adds to every response: the upstream its live map chose.
UPSTREAM_HEADER = "X-Demiurge-Upstream"
# The address nginx connected to for a proxied request ($upstream_addr): proof of which gateway answered.
REACHED_HEADER = "X-Demiurge-Reached"
_ENTRY_HEADER = re.compile(r"^# (org-[0-9a-f-]{36})(?: owner=(\S+))?$")
_SHARD_HEADER = "# Managed by demiurge.gateway.edge_route; do not edit."
_NGINX_WHERE = re.compile(r" in (/\S+):(\d+)")


class EdgeError(GatewayError):
    """nginx refused a change, or a reload did not take effect; the previous state is back."""

    outcome = "not_applied"


def shard_path(root, label):
    """The shard file of an organization's route: picked by the first two hex digits of its id."""
    return os.path.join(root, ROUTES_DIR, "orgs-%s.conf" % label[4:6])


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
        return shard_path(self.root, label)

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

    def _ask(self, method, path, host, timeout):
        """(status, {lower-case header: value}) of one request for host to the live nginx."""
        match = re.match(r"^http://([^/:]+):(\d+)", self.listen_url)
        with socket.create_connection((match.group(1), int(match.group(2))), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(("%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (method, path, host)).encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                head += chunk
        lines = head.decode("latin-1").split("\r\n\r\n")[0].split("\r\n")
        status = int(lines[0].split(" ")[1]) if lines[0].startswith("HTTP/") else 0
        return status, {name.strip().lower(): value.strip() for name, dummy, value in (line.partition(":") for line in lines[1:])}

    def served_upstream(self, host):
        """Upstream the live nginx maps host to ('' for none), via one HTTP request."""
        return self._ask("HEAD", "/.well-known/demiurge-route", host, 2)[1].get(UPSTREAM_HEADER.lower(), "")

    def reached(self, host, path, timeout):
        """(status, address nginx reached) of one GET of path for host through the edge: the
        edge's own word for which gateway answered, not the gateway's."""
        status, headers = self._ask("GET", path, host, timeout)
        return status, headers.get(REACHED_HEADER.lower(), "")

    def wait_reached(self, host, upstream, path, timeout):
        """None once a GET of path for host through the edge is answered 200 by upstream, else why not."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, address = self.reached(host, path, max(0.5, deadline - time.monotonic()))
                if status == 200 and address == upstream:
                    return None
                why = "HTTP %d, nginx reached %s" % (status, address or "no gateway")
            except (OSError, ValueError, IndexError) as exc:
                why = "no answer (%s)" % exc
            if time.monotonic() > deadline:
                return why
            time.sleep(0.1)

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


class _Change:
    """One organization's wanted entry (None: no route) in its shard, and the item it came from."""

    def __init__(self, edge, item, label, host, upstream, wanted):
        self.item, self.label, self.host, self.upstream, self.wanted = item, label, host, upstream, wanted
        self.owner = item["owner"]
        self.path = edge.shard_path(label)


def _changes(domain, edge, items, refused):
    """A _Change per valid item; each invalid one goes to refused {organization: error}."""
    domain = canonical(domain, "domain")[:-1]
    changes = []
    for item in items:
        try:
            label = organization_label(item["organization"])
            present = item["state"] == "present"
            if present and not item["upstream"]:
                raise InvalidInputError("state=present needs upstream", hint="Give the gateway's nginx_upstream (ip:port)")
            upstream = parse_upstream(item["upstream"]) if present else None
        except InvalidInputError as exc:
            refused[str(item["organization"])] = exc
            continue
        host = "%s.%s" % (label, domain)
        changes.append(_Change(edge, item, label, host, upstream,
                               render_entry(label, host, upstream, item["owner"]) if present else None))
    return changes


def change_routes(params, items, check_mode, run_command, warn):
    """Apply items [{organization, upstream, owner, state}] on one edge. Returns (done {label:
    (before, after)} of the changes made, or due in check mode; refused {organization or label:
    error}; resumed: this call made live what a holder that died left on disk, or would in check
    mode); a failure of the whole batch (lock, reload, a configuration broken elsewhere) raises.

    Changes are group-committed: the call queues its items, and whoever holds the edge's lock
    next applies everything queued with one nginx -t and one reload, so concurrent jobs share a
    validation and a reload instead of waiting for one each. An entry nginx rejects fails alone:
    the batch is halved until the entries nginx accepts are found, and those go live. A forced
    change (force=true) is applied alone."""
    if params["reach_path"] is not None and not (params["reach_path"].startswith("/") and params["listen_url"]):
        # Skipped in silence, the check would let a route count that reaches no gateway.
        raise InvalidInputError("reach_path %r needs a path starting with / and the edge's listen_url (got %r)"
                                % (params["reach_path"], params["listen_url"]),
                                hint="Give the gateway's health path (allocation_gateway_health_path) and the edge's "
                                     "demiurge_edge_listen_url")
    edge = Edge(params["config_root"], params["config_file"], run_command, params["nginx_binary"],
                params["listen_url"], params["reload_timeout"])
    refused = {}
    due = {}
    changes = _changes(params["domain"], edge, items, refused)
    for change in changes:
        current = edge.route_entry(change.label)
        if current != change.wanted:
            try:
                _refuse_foreign(change.path, change.label, current, change.owner, params["force"])
            except InvalidInputError as exc:
                refused[change.label] = exc
                continue
            due[change.label] = (current, change)
    unfinished = left_unfinished(params["config_root"])
    if check_mode:
        return {label: (current, change.wanted) for label, (current, change) in due.items()}, refused, unfinished
    # Nothing differs on disk, but a holder that died may have written it without a reload: then
    # an empty request goes through, and its holder makes the disk live.
    if not (due or unfinished):
        _check_reached(params, edge, changes, refused)
        return {}, refused, False
    request = {"domain": params["domain"], "force": params["force"], "items": [change.item for dummy, change in due.values()]}
    outcome = RouteQueue(params["config_root"]).commit(
        request, params["lock_timeout"], lambda requests, resumed: _commit(edge, requests, warn, resumed))
    if "error" in outcome:
        raise outcome["error"]
    refused.update(outcome["refused"])
    _check_reached(params, edge, changes, refused)
    return outcome["done"], refused, outcome.get("resumed", False)


def _check_reached(params, edge, changes, refused):
    """A route counts only when a request for the organization's name through this edge is
    answered by its gateway. One that is not stays in place, for the caller's rollback to withdraw
    (its outcome is unknown), and is the gateway's fault: an edge that reaches nothing else is seen
    by the edge's own checks, and an edge that cannot reach this gateway should never be given it."""
    if params["reach_path"] is None:
        return
    for change in changes:
        if change.upstream is None or change.label in refused or str(change.item["organization"]) in refused:
            continue
        why = edge.wait_reached(change.host, change.upstream, params["reach_path"], params["reach_timeout"])
        if why is not None:
            refused[change.label] = EdgeError(
                "Edge %s routes %s to gateway %s, but GET %s through it was not answered by that gateway within %ss: %s"
                % (edge.listen_url, change.host, change.upstream, params["reach_path"], params["reach_timeout"], why),
                hint="Check that the gateway runs and that this edge can reach %s (a gateway on 127.0.0.1 serves only "
                     "an edge on its own host); the allocation is rolled back" % change.upstream,
                outcome="unknown", gateway_fault=True)


def _commit(edge, requests, warn, resumed=False):
    """Under the edge's lock: the changes of every request [(id, request)] in one validation and
    one reload. Returns {id: {"done": {label: (before, after)}, "refused": {label: error}} or
    {"error": error}}. resumed: a holder died while applying, so what is on disk may not be live:
    every change is applied again, and nginx reloads even when nothing differs."""
    owner_of, changes, forced = {}, [], all(request["force"] for dummy, request in requests)
    for rid, request in requests:
        for change in _changes(request["domain"], edge, request["items"], {}):
            owner_of[change.label] = rid
            changes.append(change)
    before = {path: _read(path) for path in sorted({change.path for change in changes})}  # again, under the lock
    entries = {path: parse_shard(text) for path, text in before.items()}
    applying, done, refused = [], {}, {}
    for change in changes:
        current = entries[change.path].get(change.label)
        if current == change.wanted and not resumed:
            continue
        force = requests[0][1]["force"] if forced else False
        try:
            foreign = unmanaged_lines(before[change.path])
            if foreign and not force:
                raise InvalidInputError(
                    "Route shard %s holds lines edge_route did not write, which this change would drop: %s"
                    % (change.path, "; ".join(foreign[:3])),
                    hint="Move them to a file of your own outside %s/, or set force=true to drop them" % ROUTES_DIR)
            _refuse_foreign(change.path, change.label, current, change.owner, force)
        except InvalidInputError as exc:
            refused[change.label] = exc
            continue
        applying.append(change)
        done[change.label] = (current, change.wanted)
    try:
        if applying:
            accepted = _apply(edge, before, entries, applying, forced, warn, refused)
        else:
            accepted = set()
            if resumed and edge.test() is None:
                edge.reload()
    except (GatewayError, OSError) as exc:
        error = os_error(exc) if isinstance(exc, OSError) else exc
        return {rid: {"error": error} for rid, dummy in requests}
    outcomes = {rid: {"done": {}, "refused": {}} for rid, dummy in requests}
    outcomes[requests[0][0]]["resumed"] = resumed  # the holder's own request comes first
    for label, change in done.items():
        if label in accepted:
            outcomes[owner_of[label]]["done"][label] = change
    for label, error in refused.items():
        outcomes[owner_of[label]]["refused"][label] = error
    return outcomes


class RouteQueue:
    """The edge's queue of route changes (run/route-queue): <id>.req is waiting, <id>.claimed is
    being applied by the lock's holder, <id>.res is the answer. A request names its process, so
    one whose job died is dropped rather than applied after the fact."""

    def __init__(self, root):
        self.dir = os.path.join(root, QUEUE_DIR)
        self.lock_path = os.path.join(root, LOCK_FILE)
        os.makedirs(self.dir, exist_ok=True)

    def _path(self, rid, kind):
        return os.path.join(self.dir, "%s.%s" % (rid, kind))

    def commit(self, request, timeout, apply):
        """Queue request and return its outcome: read from whoever applied it, or applied here
        (with everything else queued) once this process holds the lock."""
        rid = "%020d-%d-%s" % (time.time_ns(), os.getpid(), os.urandom(4).hex())
        _write_atomic(self._path(rid, "req"), json.dumps(
            {"pid": os.getpid(), "started": process_start_time(os.getpid()), "request": request}))
        deadline = time.monotonic() + timeout
        pause = _FIRST_PAUSE
        with open(self.lock_path, "a") as lock:
            while True:
                answer = self._answer(rid)
                if answer is not None:
                    return answer
                if _try_lock(lock):
                    try:
                        answer = self._answer(rid)
                        if answer is None:
                            answer = self._lead(rid, apply)
                    finally:
                        fcntl.flock(lock, fcntl.LOCK_UN)
                    return answer
                if time.monotonic() > deadline:
                    if self._withdraw(rid):
                        raise EdgeError("Could not lock %s within %ss; the route was not changed" % (self.lock_path, timeout),
                                        hint="Another job holds the edge lock; retry, or raise lock_timeout")
                    if time.monotonic() > deadline + timeout:
                        # Taken by a holder that has not finished: it may still make the change live.
                        raise EdgeError("The job holding %s took this route change but did not finish it within %ss; "
                                        "whether it went live is unknown" % (self.lock_path, 2 * timeout),
                                        hint="Find the stuck job on the edge (a hung nginx -t?), then run reconcile",
                                        outcome="unknown")
                # Waiters back off: fifty of them polling every 5 ms take the CPU that nginx -t and
                # the reload they wait for need.
                time.sleep(pause)
                pause = min(pause * 1.5, _LAST_PAUSE)

    def _withdraw(self, rid):
        """True when the request was still waiting and is now gone; False once a holder took it."""
        try:
            os.unlink(self._path(rid, "req"))
            return True
        except FileNotFoundError:
            return False

    def _answer(self, rid):
        text = _read(self._path(rid, "res"))
        if text is None:
            return None
        os.unlink(self._path(rid, "res"))
        return _decode(json.loads(text))

    def _lead(self, own, apply):
        requests, resumed = self._claim(own)
        outcomes = apply(requests, resumed)
        for rid, dummy in requests:
            if rid != own:
                _write_atomic(self._path(rid, "res"), json.dumps(_encode(outcomes[rid])))
            for kind in ("claimed", "req"):
                try:
                    os.unlink(self._path(rid, kind))
                except FileNotFoundError:
                    pass
        return outcomes[own]

    def _claim(self, own):
        """This process's request, then every queued request of a live process (and those a dead
        holder had claimed), oldest first, at most one per organization: a later change of the
        same route waits for the next round, so each is checked against the route the earlier one
        left. Returns (taken, resumed): resumed when a claimed request was found, which only a
        holder that died leaves behind."""
        taken, labels, resumed = [], set(), False
        names = sorted(os.listdir(self.dir), key=lambda name: (not name.startswith(own + "."), name))
        for name in names:
            rid, dot, kind = name.partition(".")
            if kind not in ("req", "claimed"):
                if kind == "res" and _age(os.path.join(self.dir, name)) > STALE_ANSWER_SECONDS:
                    _put(os.path.join(self.dir, name), None)  # its job died before reading it
                continue
            text = _read(os.path.join(self.dir, name))
            if text is None:
                continue
            resumed = resumed or kind == "claimed"
            try:
                data = json.loads(text)
            except ValueError:
                _put(os.path.join(self.dir, name), None)  # unreadable: it must not stop every later change
                continue
            if rid != own and process_start_time(data["pid"]) != data["started"]:
                _put(os.path.join(self.dir, name), None)  # its job died: reconcile repairs what it left
                continue
            mine = {organization_label(item["organization"]) for item in data["request"]["items"]}
            # A forced request goes alone; so does the first one when it is forced.
            if mine & labels or (taken and (data["request"]["force"] or taken[0][1]["force"])):
                continue
            if kind == "req":
                try:
                    os.rename(self._path(rid, "req"), self._path(rid, "claimed"))
                except FileNotFoundError:
                    continue  # withdrawn after its timeout
            taken.append((rid, data["request"]))
            labels |= mine
        return taken, resumed


def left_unfinished(config_root):
    """Whether a holder died while applying changes, so that what is on disk may not be live: only
    that leaves a claimed request behind (a live holder's is claimed only while it applies)."""
    try:
        names = os.listdir(os.path.join(config_root, QUEUE_DIR))
    except FileNotFoundError:
        return False
    return any(name.endswith(".claimed") for name in names)


def _try_lock(handle):
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        return False


def _age(path):
    try:
        return time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return 0


_ERRORS = {cls.__name__: cls for cls in (EdgeError, InvalidInputError, StorageError)}


def _encode_error(error):
    return {"type": type(error).__name__, "msg": error.msg, "hint": error.hint, "details": error.details}


def _decode_error(data):
    return _ERRORS.get(data["type"], EdgeError)(data["msg"], hint=data["hint"], **data["details"])


def _encode(outcome):
    if "error" in outcome:
        return {"error": _encode_error(outcome["error"])}
    return {"done": outcome["done"], "refused": {label: _encode_error(error) for label, error in outcome["refused"].items()}}


def _decode(data):
    if "error" in data:
        return {"error": _decode_error(data["error"])}
    return {"done": {label: tuple(change) for label, change in data["done"].items()},
            "refused": {label: _decode_error(error) for label, error in data["refused"].items()}}


def ensure_route(params, check_mode, run_command, warn):
    """One organization's route: a batch of one, whose refusal is the task's failure."""
    item = {key: params[key] for key in ("organization", "upstream", "owner", "state")}
    done, refused, dummy = change_routes(params, [item], check_mode, run_command, warn)
    for error in refused.values():
        raise error
    label = organization_label(params["organization"])
    upstream = parse_upstream(params["upstream"]) if params["state"] == "present" else None
    before, after = done.get(label, (None, None))
    return {"host": "%s.%s" % (label, canonical(params["domain"], "domain")[:-1]),
            "path": shard_path(params["config_root"], label),
            "upstream": upstream, "changed": label in done, "diff": {"before": before or "", "after": after or ""}}


def ensure_routes(params, check_mode, run_command, warn):
    """Many organizations' routes, one validation and one reload; each refusal fails only its own
    organization, and the task fails at the end naming each."""
    done, refused, resumed = change_routes(params, params["routes"], check_mode, run_command, warn)
    organizations = {organization_label(item["organization"]): str(item["organization"]) for item in params["routes"]
                     if str(item["organization"]) not in refused}
    result = {
        "changed": bool(done) or resumed,
        "made_live": resumed,
        "changed_organizations": sorted(organizations[label] for label in done),
        "failed_organizations": {organizations.get(key, key): str(error) for key, error in sorted(refused.items())},
        "unknown_organizations": sorted(organizations.get(key, key) for key, error in refused.items()
                                        if error.details.get("outcome", error.outcome) != "not_applied"),
        "gateway_faults": sorted(organizations.get(key, key) for key, error in refused.items() if error.details.get("gateway_fault")),
        "diff": {"before": "".join(before or "" for before, dummy in done.values()),
                 "after": "".join(after or "" for dummy, after in done.values())},
    }
    if refused:
        raise EdgeError("%d of %d routes were not changed, the others were: %s" % (
            len(refused), len(params["routes"]),
            "; ".join("%s: %s" % item for item in sorted(result["failed_organizations"].items()))),
            hint="Fix each cause named, then run again", **result)
    return result


def _refuse_foreign(path, label, current, owner, force):
    current_owner = entry_owner(current)
    if current is None or owner is None or force or current_owner == owner:
        return
    raise InvalidInputError("Route of %s in %s is owned by %s, not by %s" % (label, path, current_owner or "nobody", owner),
                            hint="Leave it to its owner, or set force=true to take it over", current_owner=current_owner)


def _render(entries, changes):
    """{path: shard text} of every shard in entries after changes."""
    shards = {path: dict(found) for path, found in entries.items()}
    for change in changes:
        if change.wanted is None:
            shards[change.path].pop(change.label, None)
        else:
            shards[change.path][change.label] = change.wanted
    return {path: render_shard(found) for path, found in shards.items()}


def _write(texts):
    for path, text in texts.items():
        _put(path, text)


def _accepted(edge, before, entries, changes, verdict, refused):
    """The changes nginx accepts, when it rejected all of them together with verdict: halves are
    tested on their own until each rejected change is found alone (the shards end as before)."""
    if verdict is None:
        return list(changes)
    if len(changes) == 1:
        refused[changes[0].label] = EdgeError(
            "nginx rejected the route for %s, the previous routes are back: %s" % (changes[0].host, verdict),
            hint="Fix the value named in nginx's message", nginx_error=verdict)
        return []
    accepted = []
    for half in (changes[:len(changes) // 2], changes[len(changes) // 2:]):
        _write(_render(entries, half))
        half_verdict = edge.test()
        _write(before)
        accepted += _accepted(edge, before, entries, half, half_verdict, refused)
    return accepted


def _apply(edge, before, entries, changes, force, warn, refused):
    """Write changes, test, reload, prove the live nginx serves them; returns the labels that went
    live. Anything short of that puts every shard back as it was when the lock was taken."""
    candidate = _render(entries, changes)
    _write(candidate)
    verdict = edge.test()
    if verdict is not None:
        _write(before)
        broken = edge.test()
        if broken is not None:
            if not force:
                raise EdgeError(
                    "The nginx configuration under %s was already broken before this change, nothing was changed: %s"
                    % (edge.root, broken),
                    hint="Fix or remove the file named in nginx's message, or set force=true to write the route anyway",
                    nginx_error=broken)
            # Forced: keep the routes on disk; they go live with the next reload after the foreign fix.
            _write(candidate)
            warn("Routes for %s written but not live: nginx configuration is broken elsewhere: %s"
                 % (", ".join(change.host for change in changes), broken))
            return {change.label for change in changes}
        changes = _accepted(edge, before, entries, changes, verdict, refused)
        if not changes:
            return set()
        candidate = _render(entries, changes)
        _write(candidate)
        if edge.test() is not None:
            _write(before)
            raise EdgeError("nginx rejected the routes nginx accepted one by one, the previous routes are back",
                            hint="Check the edge's error log and the shards under %s" % os.path.join(edge.root, ROUTES_DIR))
    old_workers = edge.accepting_workers()
    try:
        edge.reload()
    except EdgeError:
        _write(before)  # never leave a route on disk that is not live
        raise
    # One reload makes the whole candidate live at once, so one route proves it. Served by a new
    # worker is not enough: until the old workers stop accepting (nginx waits about 100 ms before
    # telling them), a request can still meet the old configuration.
    probe = changes[-1]
    if not (edge.wait_served(probe.host, probe.upstream or "") and edge.wait_retired(old_workers)):
        _write(before)
        edge.reload()
        raise EdgeError(
            "nginx reloaded but did not serve the new route for %s within %ss; the previous routes are back"
            % (probe.host, edge.reload_timeout),
            hint="Check the edge's error log for the reload failure")
    return {change.label for change in changes}


def route_argument_spec():
    spec = journal_argument_spec()
    spec.update({
        "config_root": {"type": "path", "required": True},
        "config_file": {"type": "path"},
        "organization": {"type": "str"},
        "routes": {"type": "list", "elements": "dict", "options": {
            "organization": {"type": "str", "required": True},
            "upstream": {"type": "str"},
            "owner": {"type": "str"},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
        }},
        "domain": {"type": "str", "required": True},
        "upstream": {"type": "str"},
        "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
        "owner": {"type": "str"},
        "force": {"type": "bool", "default": False},
        "listen_url": {"type": "str"},
        "nginx_binary": {"type": "path", "default": "/usr/sbin/nginx"},
        "reload_timeout": {"type": "float", "default": 10},
        "lock_timeout": {"type": "float", "default": 60},
        "reach_path": {"type": "str"},
        "reach_timeout": {"type": "float", "default": 5},
    })
    return spec


EDGE_ROUTE = ModuleDef(
    route_argument_spec,
    lambda call: (ensure_route if call.params["routes"] is None else ensure_routes)(
        call.params, call.check_mode, call.run_command, call.warn),
    batch="routes",
    mutually_exclusive=[("organization", "routes")],
    required_one_of=[("organization", "routes")])


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
    lambda call: {"changed": False, "routes": list_routes(call.params["config_root"]),
                  "unfinished": left_unfinished(call.params["config_root"])})
