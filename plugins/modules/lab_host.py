#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: lab_host
short_description: A host of a test topology, made of Linux namespaces on one machine
version_added: 0.4.0
description:
  - Makes or removes one lab host, a stand-in for a separate machine, for trying and testing the
    collection on real hosts without more machines. The host is a network namespace with its own address on a bridge of the machine. It also has a persistent
    mount namespace in which O(private_paths) are private tmpfs file systems.
  - Programs started inside both namespaces (the role C(demiurge.gateway.lab_hosts) starts sshd
    there) share the machine's programs but see only their own O(private_paths). The
    machine, and every other lab host, reaches that state only through them.
  - The bridge is created with the first host and removed with the last one.
  - Needs root on Linux, with C(ip), C(unshare), C(nsenter), C(findmnt) and C(mount).
extends_documentation_fragment:
  - demiurge.gateway.attributes
attributes:
  diff_mode:
    details: The diff lists the commands that make the change.
options:
  name:
    description: Name of the host, up to 24 of C(a-z), C(0-9) and C(-).
    type: str
    required: true
  env_name:
    description: Environment the host belongs to; the network namespace is C(dg-<env_name>-<name>).
    type: str
    required: true
  address:
    description: The host's IPv4 address with its prefix, on the bridge's network. Required when present.
    type: str
  bridge:
    description: Name of the machine's bridge the host is attached to (at most 15 characters).
    type: str
    required: true
  bridge_address:
    description:
      - The machine's IPv4 address on the bridge, with its prefix. The host's default route goes
        through it. Required when present.
    type: str
  private_paths:
    description:
      - Paths that are a private tmpfs inside the host.
      - Defaults to the root of the environments' state (C(LOCAL_DEV_DIR), the root of every path
        the filter P(demiurge.gateway.state_path#filter) builds) and C(/tmp), so the collection's roles keep a
        host's state in its private area.
    type: list
    elements: path
  private_size:
    description: Size limit of each private tmpfs (C(mount -o size=)).
    type: str
    default: 512m
  lab_dir:
    description: Directory of the lab on the machine; the persistent mount namespaces are files under its C(mnt).
    type: path
    required: true
  state:
    description: V(present) makes the host, V(absent) stops every process in it and removes it.
    type: str
    choices: [present, absent]
    default: present
notes:
  - Changing the address of an existing host fails; remove it first.
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
- name: Make an edge host at 10.231.160.11
  demiurge.gateway.lab_host:
    name: edge1
    env_name: lab-001
    address: 10.231.160.11/24
    bridge: dglab160
    bridge_address: 10.231.160.1/24
    lab_dir: /run/demiurge-lab/lab-001

- name: Remove it (and the bridge, with the last host)
  demiurge.gateway.lab_host:
    name: edge1
    env_name: lab-001
    bridge: dglab160
    lab_dir: /run/demiurge-lab/lab-001
    state: absent
"""

RETURN = r"""
commands:
  description: Commands run to make the change (to be run, in check mode).
  returned: always
  type: list
  elements: str
  sample: [ip netns add dg-lab-001-edge1]
netns:
  description: Name of the host's network namespace.
  returned: always
  type: str
  sample: dg-lab-001-edge1
mount_namespace:
  description: File that holds the host's persistent mount namespace (for C(nsenter --mount=)).
  returned: always
  type: str
  sample: /run/demiurge-lab/lab-001/mnt/edge1
address:
  description: The host's IPv4 address.
  returned: when O(state=present)
  type: str
  sample: 10.231.160.11
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._lab_host import LAB_HOST
from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module


def main():
    run_module(LAB_HOST)


if __name__ == "__main__":
    main()
