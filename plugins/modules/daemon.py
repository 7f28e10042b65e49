#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: daemon
short_description: Run a service as a supervised process on hosts without a service manager
version_added: 0.1.0
description:
  - Starts, stops, restarts or reloads one long-running program tracked by a pid file.
  - Used by the collection's roles for the local stack, where there is no systemd. On hosts with
    systemd the roles use unit files instead.
  - The pid file records the pid, the program and the process's start time. It is trusted only
    while that very process is alive, so a stale file after a crash or reboot does not hide a
    stopped service, and a pid reused by another process is never signalled.
  - A process the pid file started stays tracked when the task asks for another program (a
    controller with another Python venv); the task then warns, and V(restarted) switches it.
  - Starting fails when another process already listens on O(wait_port).
  - With O(wait_port), start returns only once the program accepts TCP connections; a program that
    exits or never listens fails the task with the last lines of O(log_file).
extends_documentation_fragment:
  - demiurge.gateway.attributes
attributes:
  idempotent:
    details: V(restarted) and V(reloaded) always act and report a change.
options:
  name:
    description: Name of the service, used in messages.
    type: str
    required: true
  argv:
    description:
      - Program and arguments. The program runs in the foreground from the module's point of view
        and must not daemonize itself.
      - O(argv[0]) must be an absolute path.
      - Required to start; stopping uses the program recorded in O(pidfile).
    type: list
    elements: str
  program:
    description:
      - Absolute path of the program the process runs once started, when O(argv[0]) is a wrapper
        that replaces itself with it (C(nsenter), C(chpst)). The pid file records it; a pid file
        without a start time (written by an older version) is trusted only while the process runs it.
      - Defaults to O(argv[0]).
    type: path
  pidfile:
    description: File that records the pid of the running process.
    type: path
    required: true
  log_file:
    description: File that receives the program's standard output and error. Required to start.
    type: path
  state:
    description:
      - V(started) starts the program when it is not running.
      - V(stopped) sends O(stop_signal) and waits, then C(SIGKILL) after O(stop_timeout).
      - V(restarted) stops then starts. V(reloaded) sends O(reload_signal), starting the program if it is not running.
    type: str
    choices: [started, stopped, restarted, reloaded]
    default: started
  user:
    description: Run the program as this user (with its primary and supplementary groups).
    type: str
  chdir:
    description: Working directory of the program.
    type: path
  environment:
    description: Extra environment variables for the program.
    type: dict
    default: {}
  environment_files:
    description:
      - Files of C(KEY=VALUE) lines (blank lines and C(#) comments skipped, no quoting), read on the
        host at each start and added to the environment after O(environment), as systemd's
        C(EnvironmentFile=) does.
      - For secrets, which then appear in no task option, and so in no pool metadata that records the
        service. Keep them mode C(0600).
      - Their values are masked in the log lines a failure to start quotes.
    type: list
    elements: path
    default: []
  clean_environment:
    description:
      - Start the program with only C(PATH) and what O(environment) and O(environment_files) give,
        instead of the module's own environment (which holds the controller's variables).
      - For a program that runs code of its own, such as a gateway build.
    type: bool
    default: false
  wait_host:
    description: Address to probe with O(wait_port).
    type: str
    default: 127.0.0.1
  wait_port:
    description: TCP port the program listens on once it is ready.
    type: int
  wait_timeout:
    description: Seconds to wait for O(wait_port).
    type: float
    default: 30
  stop_signal:
    description: Signal that asks the program to stop (for PostgreSQL, V(INT) is its fast shutdown).
    type: str
    default: TERM
  reload_signal:
    description: Signal that asks the program to reload its configuration.
    type: str
    default: HUP
  stop_timeout:
    description: Seconds to wait after O(stop_signal) before C(SIGKILL).
    type: float
    default: 30
seealso:
  - module: ansible.builtin.systemd_service
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
- name: Run nginx for the local stack
  vars:
    env_dir: "{{ 'dev-001' | demiurge.gateway.state_path }}"
  demiurge.gateway.daemon:
    name: edge-nginx
    argv: [/usr/sbin/nginx, -p, "{{ env_dir }}/nginx", -c, conf/nginx.conf, -g, "daemon off;"]
    pidfile: "{{ env_dir }}/run/edge-nginx.pid"
    log_file: "{{ env_dir }}/log/edge-nginx.log"
    wait_port: 15080

- name: Stop PostgreSQL with a fast shutdown
  demiurge.gateway.daemon:
    name: pool-db
    pidfile: "{{ 'dev-001' | demiurge.gateway.state_path('run', 'pool-db.pid') }}"
    stop_signal: INT
    state: stopped
"""

RETURN = r"""
pid:
  description: Pid of the running process, or null when it is stopped.
  returned: always
  type: int
  sample: 4242
state:
  description: V(running) or V(stopped) after the task (predicted in check mode).
  returned: always
  type: str
  sample: running
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._daemon import DAEMON
from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module


def main():
    run_module(DAEMON)


if __name__ == "__main__":
    main()
