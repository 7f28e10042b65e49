# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

Start, stop and signal a long-running process tracked by a pid file, for hosts
without a service manager. A pid is trusted only while /proc says the process
is alive (not a zombie) and still runs the same program.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import time

from ansible_collections.demiurge.gateway.plugins.module_utils._module import ModuleDef
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import (
    GatewayError,
    InvalidInputError,
    ServiceError,
)

_POLL = 0.05


def _alive(pid):
    """True until the process has exited and closed its files (a zombie has)."""
    try:
        with open("/proc/%d/stat" % pid) as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _executable(pid):
    """Basename of the program pid runs, or None once it is exiting or gone."""
    try:
        # Deleted binaries show as "name (deleted)" after a package upgrade.
        return os.path.basename(os.readlink("/proc/%d/exe" % pid)).split(" ")[0]
    except OSError:
        return None


def process_start_time(pid):
    """When pid started (clock ticks after boot, /proc/<pid>/stat field 22): with the pid, it names
    one process for good, where the program alone does not (every Python program runs python3)."""
    try:
        with open("/proc/%d/stat" % pid) as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def read_pidfile(pidfile):
    """(pid, program, start time) recorded in pidfile; None for what it does not hold."""
    try:
        with open(pidfile) as handle:
            lines = handle.read().split("\n") + ["", ""]
        return int(lines[0]), lines[1] or None, lines[2] or None
    except (OSError, ValueError):
        return None, None, None


def running_pid(pidfile, program=None):
    """The pid in pidfile if that process is alive and is the very process that was started: its
    start time and program are the ones recorded. A pid reused by another process (the recorded one
    died) is never signalled. program only counts for a pid file without a start time, which
    cannot tell a reused pid otherwise; where the start time proves the identity, a process started
    by another interpreter (another controller's venv) is still this pid file's."""
    pid, recorded, started = read_pidfile(pidfile)
    expected = recorded if started is not None else program or recorded
    if pid is None or expected is None:
        return None
    if not _alive(pid) or _executable(pid) != os.path.basename(os.path.realpath(expected)):
        return None
    if started is not None and process_start_time(pid) != started:
        return None
    return pid


def port_open(host, port, timeout=0.2):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tail(path, lines=15):
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 8192))
            return b"\n".join(handle.read().splitlines()[-lines:]).decode("utf-8", "replace")
    except OSError:
        return ""


def _write_atomic(path, text, mode=0o644):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.rename(tmp, path)


def read_environment_file(path):
    """KEY=VALUE lines (blank lines and # comments skipped), as systemd's EnvironmentFile= reads
    them without quoting. Secrets live in such a file, 0600 on the host, never in the task's options."""
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise InvalidInputError("Cannot read environment file %s: %s" % (path, exc.strerror),
                                hint="Create it (mode 0600) before starting the service")
    values = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            # The line itself may hold a secret: only its number is named.
            raise InvalidInputError("Line %d of environment file %s is not KEY=VALUE" % (number, path),
                                    hint="Write one KEY=VALUE per line")
        values[key.strip()] = value
    return values


class Daemon:
    """One supervised process, described by the module's options."""

    @classmethod
    def from_options(cls, options):
        """A Daemon from the daemon module's options (defaults filled in for those not given)."""
        merged = {key: value.get("default") for key, value in daemon_argument_spec().items()}
        merged.update(options)
        return cls(merged["name"], merged["pidfile"], argv=merged["argv"], log_file=merged["log_file"],
                   user=merged["user"], chdir=merged["chdir"], environment=merged["environment"],
                   wait_host=merged["wait_host"], wait_port=merged["wait_port"], wait_timeout=merged["wait_timeout"],
                   stop_signal=merged["stop_signal"], reload_signal=merged["reload_signal"],
                   stop_timeout=merged["stop_timeout"], program=merged["program"],
                   environment_files=merged["environment_files"], clean_environment=merged["clean_environment"])

    def __init__(self, name, pidfile, argv=None, log_file=None, user=None, chdir=None, environment=None,
                 wait_host="127.0.0.1", wait_port=None, wait_timeout=30.0,
                 stop_signal="TERM", reload_signal="HUP", stop_timeout=30.0, program=None, environment_files=(),
                 clean_environment=False):
        self.name = name
        self.argv = [str(arg) for arg in argv or ()]
        self.program = self.argv[0] if self.argv else None
        # What the process runs once started: argv[0], unless argv[0] is a wrapper that execs it.
        self.runs = program or self.program
        self.pidfile = pidfile
        self.log_file = log_file
        self.user = user
        self.chdir = chdir
        self.environment = environment or {}
        self.environment_files = list(environment_files or ())
        self.clean_environment = clean_environment
        self.wait_host = wait_host
        self.wait_port = wait_port
        self.wait_timeout = wait_timeout
        self.stop_signal = self._signal(stop_signal)
        self.reload_signal = self._signal(reload_signal)
        self.stop_timeout = stop_timeout
        for executable in {self.program, self.runs} - {None}:
            if not (os.path.isabs(executable) and os.access(executable, os.X_OK)):
                raise InvalidInputError(
                    "Program %s of service %s is not an absolute path to an executable" % (executable, name),
                    hint="Install the package that provides it or fix argv[0] (or program)",
                )

    def _signal(self, name):
        try:
            return getattr(signal, "SIG" + name.upper().replace("SIG", "", 1))
        except AttributeError:
            raise InvalidInputError("Unknown signal %r" % name, hint="Use a name such as TERM, INT, QUIT or HUP")

    def pid(self):
        """Pid of the running process; without argv, trusts the program recorded at start."""
        return running_pid(self.pidfile, self.runs)

    def _account(self):
        if self.user is None:
            return None
        try:
            return pwd.getpwnam(self.user)
        except KeyError:
            raise InvalidInputError("User %s for service %s does not exist" % (self.user, self.name),
                                    hint="Create the user or install the package that does")

    def start(self):
        """Spawn the process detached from the caller; return its pid once it serves."""
        if not self.argv or not self.log_file:
            raise InvalidInputError("Service %s needs argv and log_file to start" % self.name,
                                    hint="Give the program, its arguments and a log file")
        account = self._account()
        if self.wait_port is not None and port_open(self.wait_host, self.wait_port):
            raise ServiceError(
                "Cannot start %s: %s:%s is already in use by a process this pid file (%s) does not track"
                % (self.name, self.wait_host, self.wait_port, self.pidfile),
                hint="Stop that process or give %s another port" % self.name,
            )
        for path in (self.pidfile, self.log_file):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        # A clean environment keeps the controller's variables (an operator's PGPASSWORD, a cloud
        # token) from a program that runs foreign code, such as a gateway build.
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"} if self.clean_environment else dict(os.environ)
        env.update({key: str(value) for key, value in self.environment.items()})
        for path in self.environment_files:
            env.update(read_environment_file(path))
        if account is not None:
            env.update(HOME=account.pw_dir, USER=account.pw_name, LOGNAME=account.pw_name)
        log = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        if account is not None:
            os.fchown(log, account.pw_uid, account.pw_gid)
        # The child reports a failed exec through this pipe; a successful exec closes it.
        errors_read, errors_write = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            self._exec_child(account, env, log, errors_write)
        os.close(errors_write)
        os.close(log)
        with os.fdopen(errors_read, "rb") as errors:
            failure = errors.read()
        if failure:
            os.waitpid(pid, 0)
            self._forget()
            raise ServiceError("Could not start %s (%s): %s" % (self.name, self.program, failure.decode("utf-8", "replace")))
        self._wait_serving(pid)
        return pid

    def _exec_child(self, account, env, log, errors_write):
        """In the forked child: detach, drop privileges, exec. Never returns."""
        try:
            # A new session so the process outlives the module and never holds Ansible's pipes.
            os.setsid()
            # Written by the child itself, before it drops privileges: a caller killed right after
            # the fork still leaves the process tracked, so the next stop or restart finds it.
            _write_atomic(self.pidfile, "%d\n%s\n%s\n" % (os.getpid(), os.path.realpath(self.runs), process_start_time(os.getpid())))
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.closerange(3, errors_write)
            os.closerange(errors_write + 1, 65536)
            if account is not None:
                os.initgroups(account.pw_name, account.pw_gid)
                os.setgid(account.pw_gid)
                os.setuid(account.pw_uid)
            os.chdir(self.chdir or "/")
            os.execve(self.program, self.argv, env)
        except OSError as exc:
            os.write(errors_write, str(exc).encode("utf-8", "replace"))
        finally:
            os._exit(127)

    def _wait_serving(self, pid):
        deadline = time.monotonic() + self.wait_timeout
        while True:
            exited, status = os.waitpid(pid, os.WNOHANG)
            if exited:
                self._forget()
                raise ServiceError(
                    "%s exited with status %s right after start. Last lines of %s:\n%s"
                    % (self.name, os.waitstatus_to_exitcode(status), self.log_file, self._log_tail()),
                    hint="Fix the cause shown in the log, then run again",
                )
            if self.wait_port is None or port_open(self.wait_host, self.wait_port):
                return
            if time.monotonic() > deadline:
                self.stop(pid)
                raise ServiceError(
                    "%s did not listen on %s:%s within %ss. Last lines of %s:\n%s"
                    % (self.name, self.wait_host, self.wait_port, self.wait_timeout, self.log_file, self._log_tail()),
                    hint="Check that the port is free and the configuration is valid",
                )
            time.sleep(_POLL)

    def _log_tail(self):
        """The log's last lines for a message, without the values of the environment files: a
        program may print its secrets (the real gateway prints its whole configuration at start),
        and the message goes to task output and, as a quarantine reason, to the pool."""
        tail = _tail(self.log_file)
        secrets = set()
        for path in self.environment_files:
            try:
                secrets.update(value for value in read_environment_file(path).values() if len(value) >= 4)
            except GatewayError:
                continue
        for secret in sorted(secrets, key=len, reverse=True):
            tail = tail.replace(secret, "********")
        return tail

    def _forget(self):
        try:
            os.unlink(self.pidfile)
        except FileNotFoundError:
            pass

    def stop(self, pid):
        """Signal pid to stop, escalate to SIGKILL after stop_timeout, drop the pid file. True when
        it had to be killed (what it does when it stops may not have been done)."""
        deadline = time.monotonic() + self.stop_timeout
        killed = False
        try:
            os.kill(pid, self.stop_signal)
            os.kill(pid, signal.SIGCONT)  # a hung (stopped) process only acts on its signal once continued
            # Identity was checked before signalling; from here on only liveness counts (during exit,
            # /proc/<pid>/exe vanishes before the process has closed its listening sockets, and the
            # main thread of a threaded server can be a zombie while another thread still holds them).
            while _alive(pid) or (self.wait_port is not None and port_open(self.wait_host, self.wait_port)):
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    killed = True
                    deadline = time.monotonic() + 5
                time.sleep(_POLL)
        except ProcessLookupError:
            pass
        self._forget()
        return killed

    def reload(self, pid):
        try:
            os.kill(pid, self.reload_signal)
        except ProcessLookupError:
            raise ServiceError("%s (pid %d) vanished before it could be reloaded" % (self.name, pid),
                               hint="Start it with state=started")

    def ensure(self, state, check_mode=False):
        """Bring the process to state; return (changed, before, after)."""
        pid = self.pid()
        before = "running" if pid else "stopped"
        if state == "stopped":
            if pid and not check_mode:
                self.stop(pid)
            return pid is not None, before, "stopped"
        if state == "started":
            if pid:
                return False, before, "running"
            if not check_mode:
                self.start()
            return True, before, "running"
        # restarted and reloaded act on a running process, starting it if it is not.
        if check_mode:
            return True, before, "running"
        if pid and state == "reloaded":
            self.reload(pid)
        else:
            if pid:
                self.stop(pid)
            self.start()
        return True, before, "running"


def daemon_argument_spec():
    return {
        "name": {"type": "str", "required": True},
        "argv": {"type": "list", "elements": "str"},
        "pidfile": {"type": "path", "required": True},
        "log_file": {"type": "path"},
        "state": {"type": "str", "default": "started", "choices": ["started", "stopped", "restarted", "reloaded"]},
        "user": {"type": "str"},
        "chdir": {"type": "path"},
        "environment": {"type": "dict", "default": {}},
        "environment_files": {"type": "list", "elements": "path", "default": []},
        "clean_environment": {"type": "bool", "default": False},
        "wait_host": {"type": "str", "default": "127.0.0.1"},
        "wait_port": {"type": "int"},
        "wait_timeout": {"type": "float", "default": 30},
        "stop_signal": {"type": "str", "default": "TERM"},
        "reload_signal": {"type": "str", "default": "HUP"},
        "stop_timeout": {"type": "float", "default": 30},
        "program": {"type": "path"},
    }


def _daemon_body(call):
    params = call.params
    daemon = Daemon.from_options({key: value for key, value in params.items() if key in daemon_argument_spec() and key != "state"})
    changed, before, after = daemon.ensure(params["state"], check_mode=call.check_mode)
    recorded = read_pidfile(params["pidfile"])[1]
    if after == "running" and not changed and recorded and daemon.runs \
            and os.path.realpath(recorded) != os.path.realpath(daemon.runs):
        call.warn("%s runs %s, not %s as asked; state=restarted switches it" % (params["name"], recorded, daemon.runs))
    return {"changed": changed, "state": after, "pid": daemon.pid(),
            "diff": {"before": {"state": before}, "after": {"state": after}}}


DAEMON = ModuleDef(
    daemon_argument_spec, _daemon_body,
    required_if=[("state", state, ["argv", "log_file"]) for state in ("started", "restarted", "reloaded")])
