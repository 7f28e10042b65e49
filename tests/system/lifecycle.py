"""Running the life-cycle playbooks from tests: through ansible-runner (as AWX does), or as a process
tree that a test kills at a chosen moment, and waiting on the pool instead of sleeping."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import ansible_runner

from invariants import db

ENV = os.environ.get("DEMIURGE_TEST_ENV")
REPO = Path(os.environ.get("DEMIURGE_TEST_REPO", Path(__file__).resolve().parents[2]))
DOMAIN = "%s.demiurge.test" % ENV
# Services a run may start (a recycled gateway): they outlive the run in production too.
SERVICES = ("gateway_standin.py", "platform_api_standin.py", "gateway-build.js")


def runner_env(**extra):
    env = {"ANSIBLE_COLLECTIONS_PATH": os.environ["ANSIBLE_COLLECTIONS_PATH"], "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
           "DEMIURGE_ENV": ENV, "DEMIURGE_PORT_BASE": os.environ["DEMIURGE_TEST_PORT_BASE"], "PATH": os.environ["PATH"]}
    env.update(extra)
    return env


# Inventory sources every run uses; a test adds one (a second edge host) for its duration.
INVENTORY = [str(REPO / "inventories/local")]


def run(playbook, organization=None, check=False, forks=None, **extravars):
    """(rc, set_stats data, stdout) of one playbook run through ansible-runner."""
    if organization is not None:
        extravars["organization_id"] = str(organization)
    stats = {}

    def on_event(event):
        if event["event"] == "playbook_on_stats":
            stats.update(event["event_data"].get("artifact_data") or {})
        return True

    with tempfile.TemporaryDirectory() as tmp:
        result = ansible_runner.run(private_data_dir=tmp, playbook="demiurge.gateway.%s" % playbook, quiet=True,
                                    project_dir=str(REPO), inventory=list(INVENTORY),
                                    extravars=extravars, envvars=runner_env(), event_handler=on_event,
                                    cmdline="--check --diff" if check else None, forks=forks)
        out = result.stdout.read()
    # Whatever a run's outcome, its tasks template cleanly: a template error hides the real cause
    # behind a message about a variable (a skipped rollback step once said "'item' is undefined").
    assert "is undefined" not in out, "a template error in %s:\n%s" % (playbook, out[-3000:])
    return result.rc, stats, out


def plain(out):
    """Output as one line of text: no colours, and messages the yaml callback folded unfolded."""
    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", out).split())


def ansible_playbook():
    return str(Path(sys.executable).with_name("ansible-playbook"))


def descendants(pid):
    """Every process below pid, found by parent links (ansible-core's workers start their own
    session, so the playbook's process group does not hold them)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def kill_tree(pid):
    """Stop the run and every process it started (services excepted), then kill them all: nothing
    of the run may finish its work or start more once the kill began. The tree is listed again
    until no new process shows up: a worker forked between a listing and its parent's stop would
    otherwise go on alone and finish its task."""
    victims, stopped = [pid], set()
    while len(stopped) < len(victims):
        for victim in victims:
            if victim not in stopped:
                try:
                    os.kill(victim, signal.SIGSTOP)
                except ProcessLookupError:
                    pass
                stopped.add(victim)
        victims = [pid] + [child for child in descendants(pid) if not any(name in _cmdline(child) for name in SERVICES)]
        victims = list(dict.fromkeys(list(stopped) + victims))
    for victim in victims:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_and_kill(playbook, task_name, offset, organization=None, **extravars):
    """Run a playbook and kill its whole tree `offset` seconds after the task named task_name starts
    (None when the run ended before that). Returns the output up to the kill."""
    argv = [ansible_playbook(), "demiurge.gateway.%s" % playbook]
    for source in INVENTORY:
        argv += ["-i", source]
    if organization is not None:
        argv += ["-e", "organization_id=%s" % organization]
    for key, value in extravars.items():
        argv += ["-e", "%s=%s" % (key, value) if isinstance(value, (str, int, float)) else json.dumps({key: value})]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, **runner_env(ANSIBLE_FORCE_COLOR="0")))
    lines, killed = [], threading.Event()

    def kill_later():
        time.sleep(offset)
        kill_tree(proc.pid)
        killed.set()

    for line in proc.stdout:
        lines.append(line)
        if line.startswith("TASK [") and task_name in line and not killed.is_set():
            if offset:
                threading.Thread(target=kill_later, daemon=True).start()
            else:
                kill_tree(proc.pid)
                killed.set()
    proc.wait(60)
    return proc.returncode, "".join(lines)


def eventually(what, check, timeout=60):
    """check()'s first truthy answer, polled every half second; fails the test after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, "%s did not happen within %s s" % (what, timeout)
        time.sleep(0.5)


def wait_leases_expired(timeout=30):
    """Poll until no allocation in progress holds a live lease."""
    deadline = time.monotonic() + timeout
    while True:
        with db() as conn:
            live = conn.execute("SELECT count(*) FROM organizations_gateways WHERE stopped_at IS NULL "
                                "AND status IN ('allocating', 'releasing') AND lease_expires_at >= now()").fetchone()[0]
        if live == 0:
            return
        assert time.monotonic() < deadline, "leases still live after %s s" % timeout
        time.sleep(0.1)


def live(organization):
    with db() as conn:
        return conn.execute("SELECT id, gateway_id, status FROM organizations_gateways "
                            "WHERE organization_id = %s AND stopped_at IS NULL", (str(organization),)).fetchone()


def gateway_data_dir(organization):
    with db() as conn:
        return conn.execute("SELECT g.metadata->>'data_dir' FROM organizations_gateways og JOIN gateways g ON g.id = og.gateway_id "
                            "WHERE og.organization_id = %s AND og.stopped_at IS NULL", (str(organization),)).fetchone()[0]


def write_org_data(data_dir, projects):
    """Per-project binary Yjs state and the gateway state file, as the gateway keeps them."""
    root = Path(data_dir)
    for index, project in enumerate(projects):
        folder = root / "projects" / project
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "doc.yjs").write_bytes(os.urandom(20000 + index))
        (folder / "update-0001.bin").write_bytes(bytes(range(256)) * (index + 1))
    (root / "state.json").write_text('{"permissions": {"u1": "owner"}, "oauth": {"tokens": ["tok-1"]}, "container_tokens": {"uc-1": "ct"}}')
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def read_tree(data_dir):
    root = Path(data_dir)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def dead_run(organization, unfinished_step=None):
    """Make the organization's allocation look like one whose run died before activation, during
    unfinished_step when given (its journal record goes back to 'started')."""
    with db() as conn:
        conn.execute("UPDATE organizations_gateways SET status = 'allocating', activated_at = NULL, lease_holder = 'dead-run', "
                     "lease_expires_at = now() - interval '1 second' WHERE organization_id = %s AND stopped_at IS NULL",
                     (str(organization),))
        conn.execute("UPDATE allocation_steps SET state = 'started' FROM organizations_gateways og "
                     "WHERE og.id = allocation_id AND og.organization_id = %s AND og.stopped_at IS NULL AND step = %s",
                     (str(organization), unfinished_step))
