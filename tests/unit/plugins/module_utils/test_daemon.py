"""The supervisor against real short-lived processes."""

import os
import socket
import sys

import pytest

from ansible_collections.demiurge.gateway.plugins.module_utils._daemon import DAEMON, Daemon, process_start_time, running_pid
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import InvalidInputError, ServiceError
from ansible_collections.demiurge.gateway.plugins.module_utils._module import Call


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def http_daemon(tmp_path):
    port = free_port()
    daemon = Daemon("web", str(tmp_path / "run" / "web.pid"),
                    argv=[sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                    log_file=str(tmp_path / "log" / "web.log"), wait_port=port, wait_timeout=20, stop_timeout=5)
    yield daemon
    pid = daemon.pid()
    if pid:
        daemon.stop(pid)


def test_start_is_idempotent_and_stop_cleans_up(http_daemon):
    assert http_daemon.ensure("started") == (True, "stopped", "running")
    pid = http_daemon.pid()
    assert pid and os.getsid(pid) == pid, "the process leads its own session"
    assert http_daemon.ensure("started") == (False, "running", "running")
    assert http_daemon.ensure("stopped") == (True, "running", "stopped")
    assert not os.path.exists(http_daemon.pidfile)
    assert http_daemon.ensure("stopped") == (False, "stopped", "stopped")


def test_check_mode_changes_nothing(http_daemon):
    assert http_daemon.ensure("started", check_mode=True) == (True, "stopped", "running")
    assert http_daemon.pid() is None


def test_restart_gives_a_new_process(http_daemon):
    http_daemon.ensure("started")
    first = http_daemon.pid()
    http_daemon.ensure("restarted")
    assert http_daemon.pid() not in (None, first)


def test_stale_pidfile_of_another_program_is_not_trusted(tmp_path):
    pidfile = tmp_path / "x.pid"
    pidfile.write_text("%d\n/usr/sbin/nginx\n" % os.getpid())
    assert running_pid(str(pidfile)) is None
    assert running_pid(str(pidfile), sys.executable) == os.getpid()
    pidfile.write_text("%d\n" % os.getpid())
    assert running_pid(str(pidfile)) is None, "no program recorded or given: not trusted"


def test_a_reused_pid_running_the_same_program_is_not_trusted(tmp_path, http_daemon):
    """The recorded process died and its pid now runs another program of the same interpreter
    (every Python program is python3): the start time tells them apart."""
    http_daemon.ensure("started")
    pid, program, started = open(http_daemon.pidfile).read().split("\n")[:3]
    assert running_pid(http_daemon.pidfile) == int(pid) and started.isdigit()
    pidfile = tmp_path / "reused.pid"
    pidfile.write_text("%d\n%s\n%s\n" % (os.getpid(), sys.executable, int(started) - 1))
    assert running_pid(str(pidfile)) is None
    pidfile.write_text("%d\n%s\n%s\n" % (os.getpid(), sys.executable, process_start_time(os.getpid())))
    assert running_pid(str(pidfile)) == os.getpid()


def test_a_process_started_by_another_interpreter_is_still_this_pidfiles(http_daemon):
    """Another controller (a venv of another Python) converges the same service: its own program
    differs from the one recorded, but the recorded start time proves the process is the one this
    pid file started, so it is neither started twice nor taken for a stranger on its port."""
    http_daemon.ensure("started")
    pid = http_daemon.pid()
    other = Daemon("web", http_daemon.pidfile, argv=["/bin/true", "-m", "http.server"], log_file=http_daemon.log_file,
                   wait_port=http_daemon.wait_port, wait_timeout=5, stop_timeout=5)
    assert other.pid() == pid
    assert other.ensure("started") == (False, "running", "running")
    result = DAEMON.execute(Call({"name": "web", "argv": ["/bin/true"], "pidfile": http_daemon.pidfile,
                                  "log_file": http_daemon.log_file, "state": "started", "user": None, "chdir": None,
                                  "environment": {}, "wait_host": "127.0.0.1", "wait_port": http_daemon.wait_port,
                                  "wait_timeout": 5.0, "stop_signal": "TERM", "reload_signal": "HUP",
                                  "stop_timeout": 5.0, "program": None}, False, False, None))
    assert result["changed"] is False and result["pid"] == pid
    assert result["warnings"] == ["web runs %s, not /bin/true as asked; state=restarted switches it"
                                  % os.path.realpath(sys.executable)]


def test_stop_needs_only_the_pidfile(http_daemon):
    http_daemon.ensure("started")
    assert Daemon("web", http_daemon.pidfile, stop_timeout=5).ensure("stopped") == (True, "running", "stopped")
    assert http_daemon.pid() is None


def test_program_that_dies_reports_its_log(tmp_path):
    daemon = Daemon("bad", str(tmp_path / "bad.pid"), argv=["/bin/sh", "-c", "echo config broken >&2; exit 3"],
                    log_file=str(tmp_path / "bad.log"), wait_port=free_port(), wait_timeout=5)
    with pytest.raises(ServiceError, match="(?s)exited with status 3.*config broken"):
        daemon.start()
    assert not os.path.exists(daemon.pidfile)


def test_a_program_that_prints_its_secrets_and_dies_reports_its_log_without_them(tmp_path):
    """The real gateway prints its configuration, secrets included, at start: the message (task
    output, a quarantine reason in the pool) must not carry them."""
    secrets = tmp_path / "secrets.env"
    secrets.write_text("GATEWAY_TOKEN=tok-0123456789\nGATEWAY_HMAC_SECRET=hmac-9876543210\n")
    daemon = Daemon("gw", str(tmp_path / "gw.pid"), argv=["/bin/sh", "-c", "env | grep GATEWAY_ | sort; echo VPN config read failed; exit 1"],
                    log_file=str(tmp_path / "gw.log"), wait_port=free_port(), wait_timeout=5,
                    environment_files=[str(secrets)])
    with pytest.raises(ServiceError, match="(?s)exited with status 1.*VPN config read failed") as raised:
        daemon.start()
    assert "GATEWAY_TOKEN=********" in str(raised.value)
    assert "tok-0123456789" not in str(raised.value) and "hmac-9876543210" not in str(raised.value)


def test_a_clean_environment_holds_only_what_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "controller-secret")
    daemon = Daemon("env", str(tmp_path / "env.pid"), argv=["/bin/sh", "-c", "env; echo END"], log_file=str(tmp_path / "env.log"),
                    environment={"GIVEN": "yes"}, clean_environment=True)
    os.waitpid(daemon.start(), 0)
    printed = dict(line.split("=", 1) for line in (tmp_path / "env.log").read_text().splitlines() if "=" in line)
    assert printed["GIVEN"] == "yes" and "PGPASSWORD" not in printed and "PATH" in printed


def test_relative_program_is_refused(tmp_path):
    with pytest.raises(InvalidInputError, match="absolute path"):
        Daemon("x", str(tmp_path / "p"), argv=["nginx"], log_file=str(tmp_path / "l"))


def test_port_held_by_an_untracked_process_is_refused(http_daemon, tmp_path):
    http_daemon.ensure("started")
    intruder = Daemon("other", str(tmp_path / "other.pid"), argv=http_daemon.argv,
                      log_file=str(tmp_path / "other.log"), wait_port=http_daemon.wait_port)
    with pytest.raises(ServiceError, match="already in use"):
        intruder.ensure("started")
    assert not os.path.exists(intruder.pidfile)
