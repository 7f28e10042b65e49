import sys

import pytest
import yaml
from ansible import constants as C
from ansible.errors import AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader

from ansible_collections.demiurge.gateway.plugins.inventory import local_stack
from ansible_collections.demiurge.gateway.plugins.inventory.local_stack import InventoryModule, stack_variables

NAME = "demiurge.gateway.local_stack"


@pytest.fixture
def source(tmp_path):
    """Write an inventory source; return its path."""
    def write(text="plugin: %s\n" % NAME, name="local_stack.yml"):
        path = tmp_path / name
        path.write_text(text)
        return str(path)
    return write


def parse(path):
    # What ansible's plugin loader does before the first get_option.
    C.config.initialize_plugin_configuration_definitions(
        "inventory", NAME, yaml.safe_load(local_stack.DOCUMENTATION)["options"])
    plugin = InventoryModule()
    plugin._load_name = NAME
    inventory = InventoryData()
    plugin.parse(inventory, DataLoader(), path)
    return inventory


def test_defaults_describe_dev_001(source, monkeypatch):
    monkeypatch.delenv("DEMIURGE_ENV", raising=False)
    monkeypatch.delenv("DEMIURGE_PORT_BASE", raising=False)
    monkeypatch.setenv("LOCAL_DEV_DIR", "/srv/stacks")
    inventory = parse(source())
    assert [host.name for host in inventory.groups["edges"].get_hosts()] == ["localhost"]
    group = inventory.groups["all"].get_vars()
    assert group["local_stack_env_name"] == "dev-001" and group["local_stack_port_base"] == 15000
    assert group["demiurge_zone"] == "dev-001.demiurge.test"
    assert group["demiurge_pool_db"]["login_port"] == 15432
    assert group["demiurge_pdns_api"]["api_url"] == "http://127.0.0.1:15081"
    assert group["demiurge_org_data_dir"] == "/srv/stacks/dev-001/org-data"
    host = inventory.get_host("localhost").get_vars()
    assert host["demiurge_edge_config_root"] == "/srv/stacks/dev-001/nginx"
    assert host["demiurge_edge_listen_url"] == "http://127.0.0.1:15080"
    assert host["ansible_connection"] == "local" and host["ansible_python_interpreter"] == sys.executable
    # Its gateways are the stand-ins the local_stack role runs; the autoscaler reads these.
    assert [host.name for host in inventory.groups["gateway_hosts"].get_hosts()] == ["localhost"]
    assert host["gateway_standin_env_name"] == "dev-001" and host["gateway_standin_port_base"] == 15500
    assert host["gateway_standin_config_url"] == "https://127.0.0.1:15500", "the stack's own platform API, never a second"


def test_environment_variables_pick_the_stack(source, monkeypatch):
    monkeypatch.setenv("DEMIURGE_ENV", "test-001")
    monkeypatch.setenv("DEMIURGE_PORT_BASE", "16000")
    group = parse(source()).groups["all"].get_vars()
    assert group["demiurge_zone"] == "test-001.demiurge.test" and group["demiurge_pool_db"]["login_port"] == 16432


def test_the_source_file_wins_over_the_environment(source, monkeypatch):
    monkeypatch.setenv("DEMIURGE_ENV", "test-001")
    group = parse(source("plugin: %s\nenv_name: staging-001\nport_base: 19000\n" % NAME)).groups["all"].get_vars()
    assert group["local_stack_env_name"] == "staging-001" and group["demiurge_pdns_api"]["api_url"] == "http://127.0.0.1:19081"


def test_secrets_are_read_lazily_from_the_state_directory(monkeypatch):
    monkeypatch.setenv("LOCAL_DEV_DIR", "/srv/stacks")
    group, dummy = stack_variables("dev-001", 15000)
    assert group["demiurge_pool_db"]["login_password"] == \
        "{{ lookup('ansible.builtin.file', '/srv/stacks/dev-001/secrets/pool_db_password') }}"
    assert group["demiurge_pdns_api"]["api_key"] == \
        "{{ lookup('ansible.builtin.file', '/srv/stacks/dev-001/secrets/pdns_api_key') }}"


@pytest.mark.parametrize("env_name", ["../etc", "a/b", "", "with space"])
def test_bad_environment_name_fails_with_the_fix(env_name):
    with pytest.raises(AnsibleParserError, match="env_name .or DEMIURGE_ENV.: Invalid environment name.*Use 1-63 letters"):
        stack_variables(env_name, 15000)


@pytest.mark.parametrize("port_base", [80, 65000])
def test_port_base_outside_the_unprivileged_range_fails(port_base):
    with pytest.raises(AnsibleParserError, match="Pick a base from 1024 to 64536"):
        stack_variables("dev-001", port_base)


def test_only_local_stack_files_are_claimed(source):
    plugin = InventoryModule()
    assert plugin.verify_file(source())
    assert plugin.verify_file(source(name="staging.local_stack.yaml"))
    assert not plugin.verify_file(source(name="hosts.yml"))
