"""Every module on Ansible's ordinary path: the controller reaches the machine through a real sshd,
so each task is sent over SSH, run by the remote Python and answered over SSH, as on any managed
host. The in-process shortcut is for the local connection only; here it never runs.

The host is the test stack's own machine (its sshd listens on loopback), because the API modules
need the stack's PostgreSQL and PowerDNS, which listen there. Through it run: the life cycle
(allocate, data sync, release, allocate again with the data, reconcile), every integration target,
and a play for the modules neither uses. sshd's log proves each task came over SSH.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from invariants import db
from lifecycle import INVENTORY, REPO, ansible_playbook, gateway_data_dir, live, plain, read_tree, run, runner_env, write_org_data

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="sshd runs as root"), pytest.mark.usefixtures("invariants_hold")]
TARGETS = REPO / "tests" / "integration" / "targets"


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ensure_sshd():
    if shutil.which("sshd", path="/usr/sbin"):
        return
    # As the lab role does: the package, without starting the distribution's own service.
    proc = subprocess.run([str(Path(ansible_playbook()).with_name("ansible")), "localhost", "-m", "ansible.builtin.apt",
                           "-a", "name=openssh-server policy_rc_d=101"], cwd=REPO, env=runner_env(), capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.fixture(scope="module")
def over_ssh(tmp_path_factory):
    """A real sshd for the machine, and an inventory source (last, so it wins) that sends every
    task for localhost through it. Yields sshd's log file."""
    _ensure_sshd()
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    home = tmp_path_factory.mktemp("over-ssh")
    for key in ("client", "host"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / key)], check=True)
    (home / "authorized_keys").write_text((home / "client.pub").read_text())
    port = _free_port()
    (home / "known_hosts").write_text("[127.0.0.1]:%d %s\n" % (port, " ".join((home / "host.pub").read_text().split()[:2])))
    (home / "sshd_config").write_text(
        "ListenAddress 127.0.0.1\nPort %d\nHostKey %s\nAuthorizedKeysFile %s\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPidFile none\nLogLevel VERBOSE\n"
        # Its files sit under /tmp, which StrictModes refuses (world-writable).
        "StrictModes no\n"
        "MaxStartups 100:30:200\nMaxSessions 100\nSubsystem sftp internal-sftp\n"
        % (port, home / "host", home / "authorized_keys"))
    log = home / "sshd.log"
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-E", str(log), "-f", str(home / "sshd_config")])
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert sshd.poll() is None and time.monotonic() < deadline, "sshd did not start: %s" % log.read_text()
            time.sleep(0.1)
    inventory = home / "over_ssh.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": port, "ansible_user": "root",
        "ansible_ssh_private_key_file": str(home / "client"),
        "ansible_ssh_common_args": "-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes" % (home / "known_hosts")}}}}))
    INVENTORY.append(str(inventory))
    try:
        yield log
    finally:
        INVENTORY.remove(str(inventory))
        sshd.terminate()
        sshd.wait(10)


def sessions(log):
    """Commands sshd ran for the controller so far."""
    return log.read_text().count("Starting session: command")


def tasks_run(out):
    recap = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=\d+\s+unreachable=(\d+)\s+failed=(\d+)", plain(out))
    assert recap and recap.group(2) == "0", out[-3000:]
    return int(recap.group(1)) + int(recap.group(3))


def test_the_life_cycle_runs_every_task_over_ssh(over_ssh):
    organization, filler = uuid.uuid4(), uuid.uuid4()
    before = sessions(over_ssh)
    rc, dummy, out = run("allocate", organization)
    assert rc == 0, out[-3000:]
    assert "ansible_connection" not in out
    first_dir = gateway_data_dir(organization)
    written = write_org_data(first_dir, ["p-1", "p-2"])
    rc, dummy, out = run("data_sync")
    assert rc == 0, out[-3000:]
    rc, dummy, out = run("release", organization)
    assert rc == 0, out[-3000:]
    assert read_tree(first_dir) == {}
    assert run("allocate", filler)[0] == 0, "the filler takes the first ready gateway"
    try:
        rc, dummy, out = run("allocate", organization)
        assert rc == 0, out[-3000:]
        assert gateway_data_dir(organization) != first_dir and read_tree(gateway_data_dir(organization)) == written
    finally:
        assert run("release", organization)[0] == 0
        assert run("release", filler)[0] == 0
    rc, dummy, out = run("reconcile")
    assert rc == 0, out[-3000:]
    assert live(organization) is None
    # Every module task of those runs was a command sshd started (facts and set_fact are not).
    assert sessions(over_ssh) - before >= 30, "the runs did not go over SSH"


def _playbook(log, plays, extra_vars):
    """(rc, output, sshd sessions it opened) of plays run with the test inventory plus sshd's."""
    path = log.parent / ("play-%s.yml" % uuid.uuid4().hex)
    path.write_text(yaml.safe_dump(plays, sort_keys=False))
    argv = [ansible_playbook(), str(path), "-e", json.dumps(extra_vars)]
    for source in INVENTORY:
        argv += ["-i", source]
    before = sessions(log)
    proc = subprocess.run(argv, cwd=REPO, env=dict(os.environ, **runner_env(ANSIBLE_FORCE_COLOR="0")),
                          capture_output=True, text=True, check=False, timeout=900)
    return proc.returncode, proc.stdout + proc.stderr, sessions(log) - before


def _integration_config(output_dir):
    daemon_port = _free_port()
    return {
        "pg_port": int(os.environ["DEMIURGE_TEST_PG_PORT"]), "pg_password": os.environ["DEMIURGE_TEST_PG_PASSWORD"],
        "dns_port": int(os.environ["DEMIURGE_TEST_DNS_PORT"]), "pdns_api_url": os.environ["DEMIURGE_TEST_PDNS_API_URL"],
        "pdns_api_key": os.environ["DEMIURGE_TEST_PDNS_API_KEY"], "daemon_port": daemon_port,
        "edge_root": os.environ["DEMIURGE_TEST_EDGE_ROOT"], "edge_url": "http://127.0.0.1:%s" % os.environ["DEMIURGE_TEST_HTTP_PORT"],
        "edge_domain": os.environ["DEMIURGE_TEST_DOMAIN"],
        "standin_script": str(REPO / "roles/gateway_standin/files/gateway_standin.py"), "output_dir": str(output_dir),
    }


@pytest.mark.parametrize("target", sorted(path.name for path in TARGETS.iterdir() if (path / "tasks").is_dir()))
def test_each_integration_target_passes_over_ssh(over_ssh, tmp_path, target):
    rc, out, opened = _playbook(over_ssh, [{
        "name": "Integration target %s over SSH" % target, "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Run the target", "ansible.builtin.include_role": {"name": str(TARGETS / target)}}],
    }], _integration_config(tmp_path))
    assert rc == 0, plain(out)[-4000:]
    assert opened >= tasks_run(out) // 2, "fewer SSH sessions (%d) than the target's module tasks" % opened


def test_the_modules_no_playbook_uses_run_over_ssh(over_ssh, tmp_path):
    marker = str(uuid.uuid4())
    pool_db = {"login_port": int(os.environ["DEMIURGE_TEST_PG_PORT"]), "login_password": os.environ["DEMIURGE_TEST_PG_PASSWORD"]}
    since = (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat()

    def floor():
        with db() as conn:
            return conn.execute("SELECT value FROM pool_settings WHERE name = 'ready_floor'").fetchone()

    floor_before = floor()
    rc, out, opened = _playbook(over_ssh, [{
        "name": "The rest of the modules over SSH", "hosts": "localhost", "gather_facts": False,
        "module_defaults": {"group/demiurge.gateway.pool": pool_db},
        "tasks": [
            {"name": "Raise the ready floor in check mode", "check_mode": True, "register": "settings",
             "demiurge.gateway.pool_settings": {"ready_floor": (floor_before[0] if floor_before else 0) + 7}},
            {"name": "Record an event", "demiurge.gateway.pool_event": {
                "events": [{"kind": "job.succeeded", "step": "data_sync", "run": marker}]}, "register": "recorded"},
            {"name": "Read it back", "demiurge.gateway.pool_event_info": {"kinds": ["job.succeeded"], "since": since},
             "register": "events"},
            {"name": "Prune in check mode", "demiurge.gateway.pool_event_prune": {"older_than_days": 3650},
             "check_mode": True, "register": "pruned"},
            {"name": "Look at a lab host that does not exist", "demiurge.gateway.lab_host": {
                "name": "nohost", "env_name": "ssh-path", "bridge": "dgnone", "lab_dir": str(tmp_path / "lab"),
                "state": "absent"}, "register": "lab"},
            {"name": "Everything answered over SSH", "ansible.builtin.assert": {"that": [
                "settings is changed", "recorded is changed",
                "events.events | selectattr('run', 'equalto', '%s') | list | length == 1" % marker,
                "pruned is not changed", "lab is not changed"]}},
        ],
    }], {})
    assert rc == 0, plain(out)[-4000:]
    assert opened >= 5, "fewer SSH sessions (%d) than module tasks" % opened
    assert floor() == floor_before, "check mode changed the setting"
