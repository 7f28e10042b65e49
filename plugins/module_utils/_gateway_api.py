# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

The gateway's own contract, as the platform's gateway (packages/app-gateway) keeps it:
health at GET /collab/ping (configurable), the handshake POST /collab/start with
{"tmp_handshake_token": <uuid>}, which the gateway exchanges for its organization's
configuration at the platform's API (func_organizations_gateways_get in the pool
database). There is no reset endpoint: a gateway keeps its organization's state in
memory, so it is recycled by restarting its service with a wiped data directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError

from ansible_collections.demiurge.gateway.plugins.module_utils._daemon import Daemon
from ansible_collections.demiurge.gateway.plugins.module_utils._dns_names import organization_id
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import GatewayError, InvalidInputError
from ansible_collections.demiurge.gateway.plugins.module_utils._http import open_url
from ansible_collections.demiurge.gateway.plugins.module_utils._journal import journal_argument_spec
from ansible_collections.demiurge.gateway.plugins.module_utils._module import ModuleDef
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_db import pool_db_argument_spec
from ansible_collections.demiurge.gateway.plugins.module_utils._snapshot import written_beside

DEFAULT_HEALTH_PATH = "/collab/ping"
# Where the gateway keeps its organization's session, token included, in its /tmp; it re-enters
# that session by itself when it starts.
SESSION_FILE = "project-config.json"


class GatewayApiError(GatewayError):
    """The gateway refused or did not answer."""


def _call(api_url, method, path, body, timeout):
    """(status, decoded body). Refused connections say nothing reached the gateway; a timeout
    or a connection lost after sending leaves that unknown."""
    url = api_url.rstrip("/") + path
    try:
        response = open_url(url, method=method, data=None if body is None else json.dumps(body),
                            headers={"Content-Type": "application/json"}, timeout=timeout)
        raw = response.read()
        try:
            return response.getcode(), json.loads(raw or b"{}")
        except ValueError:
            return response.getcode(), {}
    except HTTPError as exc:
        return exc.code, {"error": exc.read().decode("utf-8", "replace")[:500]}
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        refused = isinstance(reason, ConnectionRefusedError)
        hint = "Check that the gateway's service runs and that its api_url is right"
        if path == "/collab/start" and not refused:
            # The gateway answers the handshake only once the platform API answered it.
            hint += ", and that the platform API it calls (its GANYMEDE_FQDN) answers"
        raise GatewayApiError(
            "Gateway at %s %s %s %s: %s" % (api_url, "refused" if refused else "did not answer", method, path, reason),
            hint=hint, outcome="not_applied" if refused else "unknown", gateway_fault=path == "/collab/start" or None)


def health(api_url, path=DEFAULT_HEALTH_PATH, timeout=5):
    """True when the gateway answers its health check with 200."""
    try:
        return _call(api_url, "GET", path, None, timeout)[0] == 200
    except GatewayApiError:
        return False


def wait_healthy(api_url, path, timeout, deadline_seconds):
    deadline = time.monotonic() + deadline_seconds
    while True:
        if health(api_url, path, timeout):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


# --- gateway_session: the handshake --------------------------------------------------------

def _hand_over(params, api_url, organization, allocation_id):
    """Store a one-time token with the allocation, then present it to the gateway, which
    exchanges it for its organization's configuration at the platform's API. Only the exchange,
    recorded in the pool, proves the handshake: the gateway's 200 alone does not."""
    # Imported here: the pool operations need the pool database's driver, the health check does not.
    from ansible_collections.demiurge.gateway.plugins.module_utils._pool_ops import handshake_exchanged, store_handshake_token

    token = str(uuid.uuid4())
    store_handshake_token(params, allocation_id, params["lease_holder"], token)
    status, body = _call(api_url, "POST", "/collab/start", {"tmp_handshake_token": token}, params["timeout"])
    if status != 200:
        raise GatewayApiError("Gateway at %s refused the handshake for organization %s: HTTP %d %s"
                              % (api_url, organization, status, body.get("error", "")),
                              hint="See the gateway's log; the allocation is rolled back", status=status, gateway_fault=True)
    try:
        exchanged = handshake_exchanged(params, allocation_id, token)
    except GatewayError as exc:
        # The gateway may hold the organization: whether it does is unknown, not failed.
        raise GatewayApiError("Gateway at %s answered the handshake for organization %s with 200, but whether the platform "
                              "API exchanged its token could not be read: %s" % (api_url, organization, exc.msg),
                              hint="Run reconcile.yml once the pool database answers", status=status, outcome="unknown")
    if not exchanged:
        raise GatewayApiError(
            "Gateway at %s answered the handshake for organization %s with 200, but the platform API never "
            "exchanged its token: the gateway holds no organization" % (api_url, organization),
            hint="Check the gateway's platform API address (GANYMEDE_FQDN), the CA it trusts (NODE_EXTRA_CA_CERTS) "
                 "and the platform API's log; the allocation is rolled back", status=status, outcome="not_applied",
            gateway_fault=True)


def handshake(call):
    params = call.params
    if params["sessions"] is not None:
        return _handshakes(call)
    organization = organization_id(params["organization"])
    if not call.check_mode:
        _hand_over(params, params["api_url"], organization, params["allocation_id"])
    return {"changed": True, "organization": organization,
            "diff": {"before": {"organization": None}, "after": {"organization": organization}}}


def _handshakes(call):
    """Many gateways, `concurrency` handshakes at a time; each failure is its own organization's,
    and the call then fails naming each."""
    params = call.params
    failed, unknown, done, faults = {}, [], [], []

    def one(session):
        key = str(session["organization"])
        try:
            organization = organization_id(key)
            if not call.check_mode:
                _hand_over(params, session["api_url"], organization, session["allocation_id"])
            return key, organization, None
        except GatewayError as exc:
            return key, None, exc

    with ThreadPoolExecutor(max_workers=max(1, params["concurrency"])) as pool:
        for key, organization, error in pool.map(one, params["sessions"]):
            if error is None:
                done.append(organization)
                continue
            failed[key] = str(error)
            if error.details.get("gateway_fault"):
                faults.append(key)
            if error.details.get("outcome", error.outcome) != "not_applied":
                unknown.append(key)
    result = {"changed": bool(done), "organizations": done, "failed_organizations": failed, "unknown_organizations": unknown,
              "gateway_faults": faults,
              "diff": {"before": {"organizations": []}, "after": {"organizations": done}}}
    if failed:
        raise GatewayApiError("%d of %d gateways were not handed to their organization, the others were: %s" % (
            len(failed), len(params["sessions"]), "; ".join("%s: %s" % item for item in sorted(failed.items()))),
            hint="See each gateway's log; those allocations are rolled back", outcome="unknown" if unknown else "not_applied",
            **result)
    return result


def session_argument_spec():
    spec = journal_argument_spec()
    spec.update(pool_db_argument_spec())
    spec.update({
        "api_url": {"type": "str"},
        "organization": {"type": "str"},
        "allocation_id": {"type": "str"},
        "sessions": {"type": "list", "elements": "dict", "options": {
            "api_url": {"type": "str", "required": True},
            "organization": {"type": "str", "required": True},
            "allocation_id": {"type": "str", "required": True},
        }},
        "concurrency": {"type": "int", "default": 10},
        "lease_holder": {"type": "str"},
        "timeout": {"type": "float", "default": 10},
    })
    return spec


GATEWAY_SESSION = ModuleDef(session_argument_spec, handshake, batch="sessions",
                            required_together=[("api_url", "organization", "allocation_id")],
                            mutually_exclusive=[("sessions", "api_url"), ("sessions", "organization"), ("sessions", "allocation_id")],
                            required_one_of=[("sessions", "organization")])


# --- gateway_session_info: which session a gateway holds ------------------------------------

def held_session(tmp_dir):
    """(organization, readable) of the session in a gateway's /tmp: (None, True) for none."""
    try:
        with open(os.path.join(tmp_dir, SESSION_FILE)) as handle:
            session = json.load(handle)
        return str(organization_id(session["organization_id"])), True
    except FileNotFoundError:
        return None, True
    except (OSError, ValueError, KeyError, TypeError, GatewayError):
        return None, False


def session_info(call):
    params = call.params
    organization, readable = held_session(params["tmp_dir"])
    result = {"changed": False, "organization": organization, "readable": readable, "healthy": None}
    if params["api_url"]:
        # A session file outlives its process: only a gateway that answers serves it.
        result["healthy"] = health(params["api_url"], params["health_path"], params["timeout"])
    return result


GATEWAY_SESSION_INFO = ModuleDef(lambda: {
    "tmp_dir": {"type": "path", "required": True},
    "api_url": {"type": "str"},
    "health_path": {"type": "str", "default": DEFAULT_HEALTH_PATH},
    "timeout": {"type": "float", "default": 5},
}, session_info)


# --- gateway_recycle: the scrub --------------------------------------------------------------

def _files_in(root):
    """Relative paths of everything but directories below root (empty directories are allowed:
    a gateway creates its layout when it starts)."""
    found = []
    for directory, dummy, names in os.walk(root):
        found.extend(os.path.relpath(os.path.join(directory, name), root) for name in names)
    return sorted(found)


def remove(path):
    """Remove a file or a directory tree; nothing there is fine."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def wipe(data_dir):
    """Remove everything below data_dir, keeping the directory itself (0700)."""
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    for name in os.listdir(data_dir):
        remove(os.path.join(data_dir, name))


class Service:
    """How a gateway's service is stopped and started on its host, from its pool metadata:
    {"daemon": {<the daemon module's options>}} or {"systemd_unit": "<unit>"}."""

    def __init__(self, spec, run_command):
        self.spec, self.run_command = spec or {}, run_command
        if "daemon" in self.spec:
            self.daemon = Daemon.from_options(self.spec["daemon"])
        elif "systemd_unit" in self.spec:
            self.daemon = None
        else:
            raise InvalidInputError("The gateway's metadata names no service to restart (%r)" % (spec,),
                                    hint="Register the gateway with metadata.service = {daemon: {...}} or {systemd_unit: ...}")

    def running(self):
        """True, False, or None when systemd's answer cannot say."""
        if self.daemon is not None:
            return self.daemon.pid() is not None
        rc, out, dummy = self.run_command(["systemctl", "is-active", self.spec["systemd_unit"]])
        state = out.strip()
        return True if state in ("active", "activating", "reloading") else False if state in ("inactive", "failed") else None

    def stop(self):
        """True when the daemon had to be killed after its stop timeout."""
        if self.daemon is not None:
            pid = self.daemon.pid()
            return bool(pid) and self.daemon.stop(pid)
        self._systemctl("stop")
        return False

    def start(self):
        if self.daemon is not None:
            self.daemon.start()
        else:
            self._systemctl("start")

    def _systemctl(self, verb):
        rc, out, err = self.run_command(["systemctl", verb, self.spec["systemd_unit"]])
        if rc != 0:
            raise GatewayApiError("systemctl %s %s failed: %s" % (verb, self.spec["systemd_unit"], (err or out).strip()),
                                  hint="See journalctl -u %s" % self.spec["systemd_unit"])


def recycle(call):
    """state=recycled: stop the gateway's service, wipe its data directory and its private /tmp and
    check that both are empty, remove what the life cycle wrote beside the data directory, start it
    again and wait for its health check, then check that its data directory still holds no file and
    that it re-entered no session (no project-config.json in its /tmp). Never raises for the
    gateway's own failures: `verified` says whether it may serve again, `reason` why not.
    state=stopped and state=started only stop or start it, touching nothing on disk: a release stops
    the gateway so that what it saves on stop is in the snapshot, and starts it again when the
    snapshot fails."""
    params = call.params
    name = params["name"]
    if params["state"] != "recycled":
        return _stop_or_start(call)
    if call.check_mode:
        return {"changed": True, "verified": True, "healthy": True, "reason": None}
    if not params["data_dir"]:
        return _unverified(name, "its pool metadata names no data directory (data_dir)")
    if not params["tmp_dir"]:
        # Its session and token live there: without it, nothing proves them gone.
        return _unverified(name, "its pool metadata names no private /tmp (tmp_dir), so its session cannot be checked gone")
    scrubbed = [params["data_dir"], params["tmp_dir"]]
    for directory in scrubbed:
        # A relative path would be wiped relative to wherever the task runs.
        if not os.path.isabs(directory) or os.path.normpath(directory) != directory.rstrip("/"):
            return _unverified(name, "%r is not a plain absolute path; it was left alone" % directory)
        # A wipe through a link would empty whatever it points at, and the gateway would then be
        # given that directory: someone changed the gateway's layout.
        if os.path.islink(directory) or (os.path.lexists(directory) and not os.path.isdir(directory)):
            return _unverified(name, "%s is a link or not a directory; it was left alone" % directory)
    try:
        service = Service(params["service"], call.run_command)
        service.stop()
        if health(params["api_url"], params["health_path"], params["timeout"]):
            return _unverified(name, "it still answers GET %s after its service was stopped: its process is not the one "
                               "its service runs, and it was not wiped" % params["health_path"])
        for directory in scrubbed:
            wipe(directory)
            left = _files_in(directory)
            if left:
                return _unverified(name, "%s still holds %s after the wipe" % (directory, left[:5]))
        # What a restore or a snapshot left beside the data (a killed restore's staging holds the
        # organization's data) is the organization's too.
        for path in written_beside(params["data_dir"]):
            remove(path)
            if os.path.lexists(path):
                return _unverified(name, "%s is still there after the wipe" % path)
        service.start()
    except (GatewayError, OSError, subprocess.SubprocessError, TypeError, ValueError, KeyError) as exc:
        return _unverified(name, "recycling it failed: %s" % exc)
    if not wait_healthy(params["api_url"], params["health_path"], params["timeout"], params["health_timeout"]):
        return _unverified(name, "it did not answer GET %s with 200 within %s s after its restart"
                           % (params["health_path"], params["health_timeout"]))
    left = _files_in(params["data_dir"])
    if left:
        return _unverified(name, "it wrote %s into its data directory on start" % left[:5])
    if params["tmp_dir"] and os.path.exists(os.path.join(params["tmp_dir"], SESSION_FILE)):
        return _unverified(name, "it re-entered a session on start (%s holds %s)" % (params["tmp_dir"], SESSION_FILE))
    return {"changed": True, "verified": True, "healthy": True, "reason": None}


def _stop_or_start(call):
    params = call.params
    name = "%s (%s)" % (params["name"], params["api_url"])
    result = {"changed": False, "verified": False, "healthy": False, "reason": None, "killed": False}
    try:
        service = Service(params["service"], call.run_command)
        running = service.running()
        if params["state"] == "stopped":
            if running is not False and not call.check_mode:
                result["killed"] = service.stop()
                if result["killed"]:
                    call.warn("Gateway %s did not stop within its stop timeout and was killed: what it saves when it "
                              "stops may be missing" % name)
            # Its pid file is not the only witness: a gateway that still answers was not stopped.
            if not call.check_mode and health(params["api_url"], params["health_path"], params["timeout"]):
                raise GatewayApiError("Gateway %s still answers GET %s after its service was stopped: its process is not "
                                      "the one its service runs" % (name, params["health_path"]),
                                      hint="Stop the process that listens on its address (its pid file may be missing), then "
                                           "run again", outcome="not_applied")
            return dict(result, changed=running is not False)
        healthy = health(params["api_url"], params["health_path"], params["timeout"])
        if running is not False and healthy:
            return dict(result, healthy=True)
        if call.check_mode:
            return dict(result, changed=True, healthy=True)
        if running is False:
            service.start()
    except (OSError, subprocess.SubprocessError, TypeError, ValueError, KeyError) as exc:
        # A service description the pool holds but cannot run (for example daemon options without a program).
        raise GatewayApiError("Could not %s gateway %s: %s" % ("stop" if params["state"] == "stopped" else "start", name, exc),
                              hint="Check the service in its pool metadata (pool_gateway) and its log on its host")
    if not wait_healthy(params["api_url"], params["health_path"], params["timeout"], params["health_timeout"]):
        raise GatewayApiError("Gateway %s did not answer GET %s with 200 within %s s after its start"
                              % (name, params["health_path"], params["health_timeout"]),
                              hint="See the gateway's log on its host")
    return dict(result, changed=True, healthy=True)


def _unverified(name, reason):
    return {"changed": True, "verified": False, "healthy": False, "reason": "Gateway %s was not scrubbed: %s" % (name, reason)}


def recycle_argument_spec():
    return {
        "name": {"type": "str", "required": True},
        "api_url": {"type": "str", "required": True},
        "data_dir": {"type": "path"},
        "tmp_dir": {"type": "path"},
        "service": {"type": "dict", "default": {}},
        "health_path": {"type": "str", "default": DEFAULT_HEALTH_PATH},
        "timeout": {"type": "float", "default": 5},
        "health_timeout": {"type": "float", "default": 30},
        "state": {"type": "str", "default": "recycled", "choices": ["recycled", "stopped", "started"]},
    }


GATEWAY_RECYCLE = ModuleDef(recycle_argument_spec, recycle)
