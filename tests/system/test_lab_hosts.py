"""The lab topology: hosts made of namespaces, reached over SSH, each with a private file system.

Builds the lab of the test environment (playbook demiurge.gateway.lab_hosts), checks it as an
operator would use it (through the inventory it writes), and removes it.
"""

import json
import os
import re
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from lifecycle import ENV, REPO, ansible_playbook, plain, runner_env

LAB_DIR = Path("/run/demiurge-lab") / ENV if ENV else None
# Three of the default five: each kind of check below needs no more, and each host costs seconds to
# build (test_real_hosts builds the whole topology for the platform).
HOSTS = ["edge1", "edge2", "storage1"]
LAB = json.dumps({"lab_hosts_hosts": [{"name": "edge1", "groups": ["edges"]}, {"name": "edge2", "groups": ["edges"]},
                                      {"name": "storage1", "groups": ["storage"]}]})
# The lab's inventory also names the machine (localhost, for the platform API stand-in): not a lab host.
LAB_HOSTS = "all:!localhost"
pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root"), pytest.mark.real_hosts]


def playbook(*args):
    proc = subprocess.run([ansible_playbook(), "demiurge.gateway.lab_hosts", "-e", LAB] + list(args), cwd=REPO, env=runner_env(),
                          capture_output=True, text=True, check=False, timeout=300)
    out = plain(proc.stdout + proc.stderr)
    assert proc.returncode == 0, out[-3000:]
    return int(re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)", out).group(1))


def ad_hoc(pattern, module, arguments, *extra):
    """(rc, output) of `ansible <pattern> -m <module>` through the lab's own inventory, each on a
    connection of its own (a persistent one would hide a host that stopped answering)."""
    proc = subprocess.run([str(Path(ansible_playbook()).with_name("ansible")), "-i", str(LAB_DIR / "inventory" / "hosts.yml"), pattern,
                           "-m", module, "-a", arguments] + list(extra),
                          cwd=REPO, env=runner_env(ANSIBLE_SSH_ARGS="-o ControlMaster=no", ANSIBLE_STDOUT_CALLBACK="minimal",
                                                   ANSIBLE_LOAD_CALLBACK_PLUGINS="1"),
                          capture_output=True, text=True, check=False, timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


def sshd_pid(host):
    pidfile = Path(os.environ.get("LOCAL_DEV_DIR", "/var/lib/demiurge")) / ENV / "run" / ("lab-%s-sshd.pid" % host)
    return int(pidfile.read_text().split()[0])


@pytest.fixture(scope="module")
def lab():
    changed = playbook()
    yield changed
    playbook("-e", "lab_hosts_state=absent")


def test_building_it_again_changes_nothing(lab):
    assert lab > 0
    assert playbook("--check", "--diff") == 0
    assert playbook() == 0


def test_every_host_answers_over_ssh_at_its_own_address(lab):
    rc, out = ad_hoc(LAB_HOSTS, "ansible.builtin.command", "hostname -I")
    assert rc == 0, out
    addresses = dict(re.findall(r"^(\S+) \| CHANGED \| rc=0 >>\n(\S+)", out, re.M))
    assert sorted(addresses) == sorted(HOSTS), out
    assert len(set(addresses.values())) == len(HOSTS), out
    rc, out = ad_hoc("edges", "ansible.builtin.ping", "")
    assert rc == 0 and out.count("SUCCESS") == 2, out


def test_a_hosts_private_area_is_seen_only_through_that_host(lab):
    marker = "/var/lib/demiurge/marker-%s" % uuid.uuid4()
    rc, out = ad_hoc("edge1", "ansible.builtin.copy", "content=edge1 dest=%s mode=0600" % marker)
    assert rc == 0, out
    assert not os.path.exists(marker), "the machine sees edge1's private area"
    rc, out = ad_hoc(LAB_HOSTS, "ansible.builtin.command", "test -e %s" % marker)
    assert set(re.findall(r"^(\S+) \| CHANGED \| rc=0", out, re.M)) == {"edge1"}, out
    assert len(re.findall(r"^\S+ \| FAILED \| rc=1", out, re.M)) == len(HOSTS) - 1, out
    # And the other way: the machine's state (this environment's) is not visible on a host.
    assert os.path.isdir("/var/lib/demiurge/%s" % ENV)
    rc, out = ad_hoc("storage1", "ansible.builtin.command", "test -e /var/lib/demiurge/%s" % ENV)
    assert "storage1 | FAILED | rc=1" in out, out


def test_a_hung_sshd_makes_its_host_unreachable_until_it_resumes(lab):
    pid = sshd_pid("edge2")
    os.kill(pid, signal.SIGSTOP)
    try:
        rc, out = ad_hoc("edges", "ansible.builtin.ping", "", "-T", "3")
        assert rc != 0 and "edge2 | UNREACHABLE" in out and "edge1 | SUCCESS" in out, out
    finally:
        os.kill(pid, signal.SIGCONT)
    rc, out = ad_hoc("edge2", "ansible.builtin.ping", "")
    assert rc == 0, out


def test_removing_it_leaves_nothing(lab):
    playbook("-e", "lab_hosts_state=absent")
    assert not [name for name in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                                check=True).stdout.split() if name.startswith("dg-%s-" % ENV)]
    assert not LAB_DIR.exists()
    assert "demiurge-lab/%s" % ENV not in Path("/proc/self/mountinfo").read_text()
    assert playbook("-e", "lab_hosts_state=absent") == 0
