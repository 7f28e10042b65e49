# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: local_stack
short_description: Inventory of a local stack started by the demiurge.gateway.local_stack role
version_added: 0.1.0
description:
  - Adds C(localhost) (local connection, the controller's Python) to the groups C(edges) and
    C(gateway_hosts) and sets every variable the C(local_stack) role, the allocation playbooks and
    the autoscaler need for one local stack environment, chosen by O(env_name) and O(port_base).
  - Values are computed once, when the inventory is parsed, so tasks do not template them again.
    The two secrets (C(demiurge_pool_db.login_password) and C(demiurge_pdns_api.api_key)) are read
    from the environment's state directory only when a task uses them, because the stack creates
    them on its first start.
  - The source file must end in C(local_stack.yml) or C(local_stack.yaml).
  - With O(local_edge=false) other hosts are the edges, such as the hosts of the lab
    (M(demiurge.gateway.lab_host)); their inventory, given as another source, names them in the group
    C(edges) and sets C(demiurge_edge_addresses).
options:
  plugin:
    description: Marks the file as a source of this plugin.
    type: str
    required: true
    choices: [demiurge.gateway.local_stack]
  env_name:
    description:
      - Name of the local stack environment; its state lives in C($LOCAL_DEV_DIR/<env_name>/).
      - 1-63 letters, digits, C(.), C(_) or C(-), starting with a letter or digit.
    type: str
    default: dev-001
    env:
      - name: DEMIURGE_ENV
  port_base:
    description:
      - Port base of the environment, as given to the C(local_stack) role; its services listen on
        this base plus 80, 81, 353, 432, 443 and 500 upwards.
    type: int
    default: 15000
    env:
      - name: DEMIURGE_PORT_BASE
  local_edge:
    description:
      - Whether the stack's own nginx on C(localhost) is the edge and its stand-ins the gateways. If so,
        C(localhost) is in the groups C(edges) and C(gateway_hosts) with their variables, and
        organization names resolve to 127.0.0.1.
    type: bool
    default: true
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
# inventories/local/local_stack.yml: the stack named by DEMIURGE_ENV / DEMIURGE_PORT_BASE,
# or dev-001 on port base 15000.
plugin: demiurge.gateway.local_stack

# A second environment on the same host, fixed in its own source file
# (inventories/staging/local_stack.yml):
# plugin: demiurge.gateway.local_stack
# env_name: staging-001
# port_base: 19000
# The stack serving the lab's hosts, which are the edges (the lab_hosts role writes this source
# beside the lab's own hosts.yml):
# plugin: demiurge.gateway.local_stack
# env_name: lab-001
# port_base: 16500
# local_edge: false
"""

import sys

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin
from ansible.template import trust_as_template

from ansible_collections.demiurge.gateway.plugins.module_utils._errors import InvalidInputError
from ansible_collections.demiurge.gateway.plugins.module_utils._paths import state_path, validate_env_name

# The highest offset a stack uses (its gateway stand-ins count up from base + 500).
_HIGHEST_PORT_OFFSET = 999


def _secret(env_name, name):
    """A template reading one secret file of the environment when a task uses it. The path is
    computed here, from the environment name, never from inventory input."""
    return trust_as_template("{{ lookup('ansible.builtin.file', %r) }}" % state_path(env_name, "secrets", name))


def stack_variables(env_name, port_base, local_edge=True):
    """(group variables of all, host variables of localhost) of one local stack environment."""
    try:
        validate_env_name(env_name)
    except InvalidInputError as exc:
        raise AnsibleParserError("env_name (or DEMIURGE_ENV): %s" % exc) from exc
    highest_base = 65535 - _HIGHEST_PORT_OFFSET
    if not 1024 <= port_base <= highest_base:
        raise AnsibleParserError(
            "port_base (or DEMIURGE_PORT_BASE) %d leaves the unprivileged port range: the stack uses ports %d to %d. "
            "Pick a base from 1024 to %d" % (port_base, port_base, port_base + _HIGHEST_PORT_OFFSET, highest_base))
    group_vars = {
        "local_stack_env_name": env_name,
        "local_stack_port_base": port_base,
        "demiurge_zone": "%s.demiurge.test" % env_name,
        "demiurge_pool_db": {"login_host": "127.0.0.1", "login_port": port_base + 432,
                             "login_password": _secret(env_name, "pool_db_password")},
        "demiurge_pdns_api": {"api_url": "http://127.0.0.1:%d" % (port_base + 81),
                              "api_key": _secret(env_name, "pdns_api_key")},
        "demiurge_org_data_dir": state_path(env_name, "org-data"),
    }
    host_vars = {
        "ansible_connection": "local",
        # Interpreter discovery finds a broken pyenv shim on the build machines; use the controller's.
        "ansible_python_interpreter": sys.executable,
    }
    if local_edge:
        # A records of organization names: the edge's public addresses.
        group_vars["demiurge_edge_addresses"] = ["127.0.0.1"]
        host_vars.update(demiurge_edge_config_root=state_path(env_name, "nginx"),
                         demiurge_edge_listen_url="http://127.0.0.1:%d" % (port_base + 80),
                         # Its gateways, as the local_stack role runs them: the autoscaler adds and removes some.
                         # They use the stack's platform API stand-in, whatever port base they are
                         # given: a second one would share its pid file and outlive the stack.
                         gateway_standin_env_name=env_name, gateway_standin_port_base=port_base + 500,
                         gateway_standin_config_url="https://127.0.0.1:%d" % (port_base + 500),
                         gateway_standin_pool_db=trust_as_template("{{ demiurge_pool_db }}"))
    return group_vars, host_vars


class InventoryModule(BaseInventoryPlugin):
    NAME = "demiurge.gateway.local_stack"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("local_stack.yml", "local_stack.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        local_edge = self.get_option("local_edge")
        group_vars, host_vars = stack_variables(self.get_option("env_name"), self.get_option("port_base"), local_edge)
        self.inventory.add_group("edges")
        self.inventory.add_group("gateway_hosts")
        self.inventory.add_host("localhost", group="edges" if local_edge else None)
        if local_edge:
            self.inventory.add_host("localhost", group="gateway_hosts")
        for name, value in group_vars.items():
            self.inventory.set_variable("all", name, value)
        for name, value in host_vars.items():
            self.inventory.set_variable("localhost", name, value)
