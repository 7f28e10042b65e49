"""The lab host's plan, against a scripted machine (the system test builds real ones)."""

import pytest

from ansible_collections.demiurge.gateway.plugins.module_utils._lab_host import LAB_HOST, lab_host_argument_spec
from ansible_collections.demiurge.gateway.plugins.module_utils._module import Call
from ansible_collections.demiurge.gateway.plugins.module_utils._paths import local_dev_dir


def params(**overrides):
    base = {key: spec.get("default") for key, spec in lab_host_argument_spec().items()}
    base.update(name="edge1", env_name="lab-001", address="10.231.150.11/24", bridge="dglab150",
                bridge_address="10.231.150.1/24", lab_dir="/nonexistent/lab")
    base.update(overrides)
    return base


class Machine:
    """Answers every look as on a machine without the lab; records every command."""

    def __init__(self):
        self.commands = []

    def __call__(self, argv):
        self.commands.append(argv)
        if argv[:3] == ["ip", "netns", "list"]:
            return 0, "", ""
        return 1, "", "does not exist"


def test_check_mode_plans_the_whole_host_and_runs_only_looks():
    machine = Machine()
    result = LAB_HOST.execute(Call(params(), True, True, machine))
    assert result["changed"] and result["netns"] == "dg-lab-001-edge1" and result["address"] == "10.231.150.11"
    planned = result["commands"]
    assert planned[0] == "ip link add name dglab150 type bridge"
    assert "ip netns add dg-lab-001-edge1" in planned
    assert "ip link add dglab150-11 type veth peer name eth0 netns dg-lab-001-edge1" in planned
    assert any("mount -t tmpfs" in command and command.endswith(" " + local_dev_dir()) for command in planned)
    assert any("mount -t tmpfs" in command and command.endswith("/tmp") for command in planned)
    looks = {"ip", "findmnt", "nsenter"}
    assert all(argv[0] in looks and "add" not in argv and "mount" not in argv[:3] for argv in machine.commands)


@pytest.mark.parametrize("overrides, words", [
    ({"address": "10.231.151.11/24"}, "not another address of the bridge's network"),
    ({"address": "10.231.150.1/24"}, "not another address of the bridge's network"),
    ({"address": "edge1"}, "IPv4"),
    ({"address": None}, "needs address"),
    ({"name": "Edge_1"}, "short lower-case name"),
    ({"bridge": "a-bridge-name-too-long"}, "not a valid interface name"),
])
def test_bad_input_says_why_and_runs_nothing(overrides, words):
    machine = Machine()
    result = LAB_HOST.execute(Call(params(**overrides), False, False, machine))
    assert result["failed"] and words in result["msg"], result
    assert result["outcome"] == "not_applied"
    assert machine.commands == []
