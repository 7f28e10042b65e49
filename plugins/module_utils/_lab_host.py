# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

A lab host: a network namespace with one address on a bridge of the machine, and a persistent
mount namespace in which some paths are private tmpfs. Processes started inside both (sshd, by
the lab_hosts role) see the machine's programs but only their own state; nothing outside reaches
that state except through them.

Every change is a command of ip(8), unshare(1), nsenter(1) or mount(8). The module looks first,
then plans the commands that bring the host to the wanted state; check mode stops at the plan.
"""

from __future__ import annotations

import ipaddress
import os
import re

from ansible_collections.demiurge.gateway.plugins.module_utils._errors import HostSetupError, InvalidInputError
from ansible_collections.demiurge.gateway.plugins.module_utils._module import ModuleDef
from ansible_collections.demiurge.gateway.plugins.module_utils._paths import local_dev_dir

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,23}$")
_HINT = ("Run it as root on Linux, where ip netns, unshare and nsenter may create network and mount "
         "namespaces (not inside an unprivileged container)")


def lab_host_argument_spec():
    return {
        "name": {"type": "str", "required": True},
        "env_name": {"type": "str", "required": True},
        "address": {"type": "str"},
        "bridge": {"type": "str", "required": True},
        "bridge_address": {"type": "str"},
        "private_paths": {"type": "list", "elements": "path"},
        "private_size": {"type": "str", "default": "512m"},
        "lab_dir": {"type": "path", "required": True},
        "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
    }


class LabHost:
    def __init__(self, params, run_command):
        self.name = params["name"]
        self.bridge = params["bridge"]
        self.netns = "dg-%s-%s" % (params["env_name"], params["name"])
        self.mount_dir = os.path.join(params["lab_dir"], "mnt")
        self.mount_file = os.path.join(self.mount_dir, params["name"])
        # By default the state root (what every role's state_path is under) and /tmp.
        self.private_paths = params["private_paths"] or [local_dev_dir(), "/tmp"]
        self.private_size = params["private_size"]
        self._run_command = run_command
        self.address = self.bridge_address = self.veth = None
        if params["state"] == "present":
            self.address, self.bridge_address = _addresses(params)
            # Interface names have at most 15 characters: the bridge's name and the host's last octet.
            self.veth = "%s-%s" % (self.bridge[:10], str(self.address.ip).rsplit(".", maxsplit=1)[-1])

    # --- looking -------------------------------------------------------------------------------

    def run(self, argv, check=True):
        rc, out, err = self._run_command(argv)
        if check and rc != 0:
            cause = (err or out).strip()[-500:]
            raise HostSetupError("Lab host %s: `%s` failed (exit %s): %s" % (self.name, " ".join(argv), rc, cause),
                                 hint=_HINT, host=self.name)
        return rc, out

    def _exists(self, argv):
        return self.run(argv, check=False)[0] == 0

    def _netns_exists(self):
        return self.netns in [line.split()[0] for line in self.run(["ip", "netns", "list"])[1].splitlines() if line]

    def _mount_ns_exists(self):
        rc, out = self.run(["findmnt", "-n", "-o", "FSTYPE", "--mountpoint", self.mount_file], check=False)
        return rc == 0 and out.strip() == "nsfs"

    def _private(self, path):
        rc, out = self.run(["nsenter", "--mount=" + self.mount_file, "findmnt", "-n", "-o", "FSTYPE",
                            "--mountpoint", path], check=False)
        return rc == 0 and out.strip() == "tmpfs"

    def _bridge_members(self):
        return [line.split(":")[1].strip().split("@")[0]
                for line in self.run(["ip", "-o", "link", "show", "master", self.bridge])[1].splitlines() if line]

    # --- planning ------------------------------------------------------------------------------

    def plan_present(self):
        plan = []
        bridge = "%s/%s" % (self.bridge_address.ip, self.bridge_address.network.prefixlen)
        if not self._exists(["ip", "link", "show", "dev", self.bridge]):
            plan += [["ip", "link", "add", "name", self.bridge, "type", "bridge"],
                     ["ip", "addr", "add", bridge, "dev", self.bridge],
                     ["ip", "link", "set", self.bridge, "up"]]
        elif bridge not in self.run(["ip", "-o", "addr", "show", "dev", self.bridge])[1]:
            plan.append(["ip", "addr", "add", bridge, "dev", self.bridge])
        netns = self._netns_exists()
        if not netns:
            plan.append(["ip", "netns", "add", self.netns])
        inside = ["ip", "-n", self.netns]
        address = "%s/%s" % (self.address.ip, self.address.network.prefixlen)
        if not netns or not self._exists(inside + ["link", "show", "dev", "eth0"]):
            if self._exists(["ip", "link", "show", "dev", self.veth]):
                # Left by a namespace that outlived its removal; deleting one end deletes both.
                plan.append(["ip", "link", "delete", self.veth])
            plan += [["ip", "link", "add", self.veth, "type", "veth", "peer", "name", "eth0", "netns", self.netns],
                     ["ip", "link", "set", self.veth, "master", self.bridge, "up"],
                     inside + ["addr", "add", address, "dev", "eth0"],
                     inside + ["link", "set", "eth0", "up"],
                     inside + ["link", "set", "lo", "up"],
                     inside + ["route", "replace", "default", "via", str(self.bridge_address.ip)]]
        elif address not in self.run(inside + ["-o", "addr", "show", "dev", "eth0"])[1]:
            raise InvalidInputError("Lab host %s exists with another address than %s" % (self.name, address),
                                    hint="Remove it first (state=absent), then create it again", host=self.name)
        mount_ns = self._mount_ns_exists()
        if not mount_ns:
            # A persistent namespace is a bind mount of its nsfs file, which must not sit on a
            # mount that propagates (unshare(1)); the directory is made a private mount of its own.
            if not self._exists(["findmnt", "-n", "--mountpoint", self.mount_dir]):
                plan += [["mkdir", "-p", self.mount_dir],
                         ["mount", "--bind", self.mount_dir, self.mount_dir],
                         ["mount", "--make-private", self.mount_dir]]
            # The new namespace starts with copies of every mount, among them the files that hold
            # the other hosts' namespaces: it drops them, or removing those hosts would leave
            # their namespaces alive, held by these copies.
            plan += [["touch", self.mount_file],
                     ["unshare", "--mount=" + self.mount_file, "--propagation", "private", "true"],
                     ["nsenter", "--mount=" + self.mount_file, "sh", "-c",
                      'for held in /run/netns "$1"; do if mountpoint -q "$held"; then umount -R -l "$held"; fi; done',
                      "sh", self.mount_dir]]
        for path in self.private_paths:
            if not mount_ns or not self._private(path):
                mode = "1777" if path == "/tmp" else "0755"
                plan.append(["nsenter", "--mount=" + self.mount_file, "sh", "-c",
                             'mkdir -p "$1" && mount -t tmpfs -o "mode=%s,size=%s" "lab-%s" "$1"'
                             % (mode, self.private_size, self.name), "sh", path])
        return plan

    def plan_absent(self):
        plan = []
        if self._netns_exists():
            pids = self.run(["ip", "netns", "pids", self.netns])[1].split()
            if pids:
                plan.append(["kill", "-KILL"] + pids)
            # Deleting the pair now frees the host's address and link name whatever still holds the namespace.
            plan += [["ip", "link", "delete", "%s-%s" % (self.bridge[:10], suffix)] for suffix in self._own_suffixes()]
            plan.append(["ip", "netns", "delete", self.netns])
        if self._mount_ns_exists():
            plan.append(["umount", self.mount_file])
        if os.path.exists(self.mount_file):
            plan.append(["rm", "-f", self.mount_file])
        # The directory of the namespaces' files is a mount of its own until its last file goes.
        if (os.path.isdir(self.mount_dir) and not set(os.listdir(self.mount_dir)) - {self.name}
                and self._exists(["findmnt", "-n", "--mountpoint", self.mount_dir])):
            plan.append(["umount", self.mount_dir])
        if self._exists(["ip", "link", "show", "dev", self.bridge]):
            members = set(self._bridge_members())
            # The bridge goes with its last host.
            if not members - {"%s-%s" % (self.bridge[:10], suffix) for suffix in self._own_suffixes()}:
                plan.append(["ip", "link", "delete", self.bridge])
        return plan

    def _own_suffixes(self):
        """The last octet of this host's address, read from its namespace (absent needs no address)."""
        if not self._netns_exists():
            return []
        out = self.run(["ip", "-n", self.netns, "-o", "-4", "addr", "show", "dev", "eth0"], check=False)[1]
        return [match.group(1) for match in re.finditer(r"inet \d+\.\d+\.\d+\.(\d+)/", out)]

    def apply(self, plan):
        for argv in plan:
            self.run(argv)


def _addresses(params):
    for key in ("address", "bridge_address"):
        if not params[key]:
            raise InvalidInputError("Lab host %s needs %s to be present" % (params["name"], key),
                                    hint="Give an IPv4 address with its prefix, such as 10.231.160.11/24")
    try:
        address = ipaddress.IPv4Interface(params["address"])
        bridge = ipaddress.IPv4Interface(params["bridge_address"])
    except ValueError as exc:
        raise InvalidInputError("Lab host %s: %s" % (params["name"], exc),
                                hint="Give IPv4 addresses with their prefix, such as 10.231.160.11/24") from exc
    if address.network != bridge.network or address.ip == bridge.ip:
        raise InvalidInputError("Lab host %s: %s is not another address of the bridge's network %s"
                                % (params["name"], address, bridge.network),
                                hint="Give the host an address of the bridge's network")
    return address, bridge


def _lab_host_body(call):
    params = call.params
    for key in ("name", "env_name"):
        if not _NAME.match(params[key]):
            raise InvalidInputError("Lab host %s: %s %r is not a short lower-case name" % (params["name"], key, params[key]),
                                    hint="Use up to 24 of a-z, 0-9 and -, starting with a letter or digit")
    if len(params["bridge"]) > 15 or not _NAME.match(params["bridge"]):
        raise InvalidInputError("Lab host %s: bridge %r is not a valid interface name" % (params["name"], params["bridge"]),
                                hint="Use up to 15 of a-z, 0-9 and -")
    host = LabHost(params, call.run_command)
    plan = host.plan_present() if params["state"] == "present" else host.plan_absent()
    if plan and not call.check_mode:
        host.apply(plan)
    result = {"changed": bool(plan), "commands": [" ".join(argv) for argv in plan], "netns": host.netns,
              "mount_namespace": host.mount_file,
              "diff": {"before": "", "after": "".join("%s\n" % " ".join(argv) for argv in plan)}}
    if host.address is not None:
        result["address"] = str(host.address.ip)
    return result


LAB_HOST = ModuleDef(lab_host_argument_spec, _lab_host_body)
