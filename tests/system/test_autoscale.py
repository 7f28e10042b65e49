"""The autoscaler (playbooks/autoscale.yml) on the real stack: gateways really started and stopped on
the local gateway host, registered in the real pool, measured by the real exporter and Prometheus.

The scaler's gateways get their own prefix and port base (AUTOSCALE_VARS), so the stack's own
gateways are never retired; each test sets the floor relative to what is ready now, and the settings
and every gateway the scaler made are put back afterwards."""

import os
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from urllib.request import urlopen

import pytest

from ansible_collections.demiurge.gateway.plugins.module_utils._paths import state_path
from invariants import db
from lifecycle import ENV, INVENTORY, REPO, ansible_playbook, descendants, eventually, plain, run, run_and_kill, runner_env
from test_monitoring import prometheus_alert_state, value

BASE = int(os.environ.get("DEMIURGE_TEST_PORT_BASE", "16000"))
PREFIX = "as-gw-"
# Slots 001-099 listen on BASE + 301 upwards: clear of the stack (base + 80 to 443, gateways base + 501 up).
AUTOSCALE_VARS = {"gateway_standin_name_prefix": PREFIX, "gateway_standin_port_base": BASE + 300}
QUICK = {"scale_step": 3, "max_total": 200, "host_capacity": 200, "scale_up_cooldown_seconds": 0,
         "scale_down_cooldown_seconds": 600, "idle_seconds": 3600, "breaker_failures": 3, "breaker_open_seconds": 300}
# Scale-in at once: for the tests of retiring, and to clean up after each test.
RETIRE_NOW = {"scale_down_cooldown_seconds": 0, "idle_seconds": 0}

pytestmark = pytest.mark.usefixtures("invariants_hold")


def settings(**values):
    with db() as conn:
        for name, value in values.items():
            conn.execute("UPDATE pool_settings SET value = %s WHERE name = %s", (value, name))


def counts():
    with db() as conn:
        return dict(conn.execute("SELECT status, count(*) FROM gateways WHERE status <> 'retired' GROUP BY status").fetchall())


def scaler_gateways(*statuses):
    with db() as conn:
        return dict(conn.execute("SELECT name, status FROM gateways WHERE name LIKE %s AND status = ANY(%s) ORDER BY name",
                                 (PREFIX + "%", list(statuses or ("starting", "ready", "allocated", "resetting",
                                                                  "quarantined", "retiring")))).fetchall())


def running_scaler_gateways():
    """Names of the scaler's stand-ins alive on this host, from their processes."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path("/proc", entry, "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"--name" in argv and argv.index(b"--name") + 1 < len(argv):
                name = argv[argv.index(b"--name") + 1].decode()
                if name.startswith(PREFIX) and not Path("/proc", entry, "stat").read_text().split(") ")[1].startswith("Z"):
                    found.add(name)
    return found


def events(kind, since_id):
    with db() as conn:
        rows = conn.execute("SELECT step, run, cause, detail FROM gateway_events WHERE kind = %s AND id > %s ORDER BY id",
                            (kind, since_id)).fetchall()
    return [dict(zip(("step", "run", "cause", "detail"), row)) for row in rows]


def last_event_id():
    with db() as conn:
        return conn.execute("SELECT coalesce(max(id), 0) FROM gateway_events").fetchone()[0]


def scale(check=False, **extra):
    rc, out = run("autoscale", check=check, **dict(AUTOSCALE_VARS, **extra))[::2]
    return rc, plain(out)


def floor_for(missing):
    """A floor `missing` gateways above what is ready or starting now."""
    now = counts()
    return now.get("ready", 0) + now.get("starting", 0) + missing


def health(name):
    slot = int(name[len(PREFIX):])
    try:
        with urlopen("http://127.0.0.1:%d/collab/ping" % (BASE + 300 + slot), timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


@pytest.fixture(autouse=True)
def scaler_settings():
    """Quick settings for the test; afterwards the old settings, every scaler gateway retired and
    stopped, the breaker closed and no unhealthy marker left."""
    with db() as conn:
        before = dict(conn.execute("SELECT name, value FROM pool_settings").fetchall())
        conn.execute("UPDATE autoscaler_state SET holder = NULL, lease_expires_at = NULL, breaker_open_until = NULL, "
                     "consecutive_failures = 0, last_scale_up_at = NULL, last_scale_down_at = NULL")
    settings(**QUICK)
    yield
    for marker in Path(state_path(ENV, "gateways")).glob(PREFIX + "*/unhealthy"):
        marker.unlink()
    with db() as conn:
        conn.execute("UPDATE autoscaler_state SET holder = NULL, lease_expires_at = NULL, breaker_open_until = NULL, "
                     "consecutive_failures = 0")
    settings(ready_floor=0, scale_step=100, **RETIRE_NOW)
    rc, out = scale()
    assert rc == 0, out
    assert scaler_gateways() == {} and running_scaler_gateways() == set(), out
    settings(**before)


def test_check_mode_shows_the_decision_then_a_run_creates_one_step_and_a_second_run_nothing():
    mark = last_event_id()
    floor = floor_for(2)
    settings(ready_floor=floor)
    rc, out = scale(check=True)
    assert rc == 0, out
    assert "below the floor" in out and "create 3" in out and "inputs: {" in out and "create: as-gw-001, as-gw-002" in out, out
    assert scaler_gateways() == {} and running_scaler_gateways() == set() and events("autoscale.decision", mark) == []

    rc, out = scale()
    assert rc == 0, out
    created = scaler_gateways()
    assert created == {PREFIX + "001": "ready", PREFIX + "002": "ready", PREFIX + "003": "ready"}, out
    assert running_scaler_gateways() == set(created) and all(health(name) for name in created)
    with db() as conn:
        rows = conn.execute("SELECT metadata->>'host', metadata ? 'service', metadata ? 'data_dir', created_by FROM gateways "
                            "WHERE name LIKE %s", (PREFIX + "%",)).fetchall()
    assert all(row[0] == "localhost" and row[1] and row[2] and row[3] for row in rows)
    decision = events("autoscale.decision", mark)
    assert [(e["step"], e["detail"]["create"]) for e in decision] == [("create", sorted(created))]
    assert decision[0]["detail"]["inputs"]["ready_floor"] == floor and decision[0]["detail"]["inputs"]["ready"] == floor - 2
    finished = events("autoscale.finished", mark)
    assert finished[0]["detail"]["created"] == sorted(created) and finished[0]["detail"]["start_failed"] == []

    # Enough ready now: nothing more, whatever the number of runs.
    rc, out = scale()
    assert rc == 0 and "none idle for 3600 s" in out and "changed=0" in out, out
    assert scaler_gateways() == created and events("autoscale.decision", mark)[-1]["step"] == "none"


def test_max_total_and_host_capacity_cap_a_step():
    total = sum(counts().values())
    settings(ready_floor=floor_for(3), max_total=total + 2)
    rc, out = scale()
    assert rc == 0, out
    assert len(scaler_gateways("ready")) == 2 and "of the 3 wanted" in out, out
    settings(max_total=200, host_capacity=total + 2)
    rc, out = scale()
    assert rc == 0 and "create 0" in out, out
    assert len(scaler_gateways()) == 2


def test_overlapping_runs_act_once():
    """Four runs started together (a schedule and events at the same moment): one acts, the others
    say so and exit cleanly; the pool never goes past max_total."""
    mark = last_event_id()
    total = sum(counts().values())
    settings(ready_floor=floor_for(2), max_total=total + 3)
    argv = [ansible_playbook(), "demiurge.gateway.autoscale"] + sum((["-i", source] for source in INVENTORY), [])
    argv += sum((["-e", "%s=%s" % item] for item in AUTOSCALE_VARS.items()), [])
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=dict(os.environ, **runner_env(ANSIBLE_FORCE_COLOR="0"))) for run_number in range(4)]
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4, outputs
    acted = [e["step"] for e in events("autoscale.decision", mark) if e["step"] == "create"]
    skipped = events("autoscale.skipped", mark)
    assert acted == ["create"], outputs
    assert len(skipped) + len(events("autoscale.decision", mark)) == 4
    assert all("holds the scaler" in e["cause"] for e in skipped)
    assert len(scaler_gateways()) == 3 and sum(counts().values()) <= total + 3


def test_a_claim_racing_a_scale_in_keeps_its_gateway():
    """The scale-in's UPDATE meets a claim holding the gateway's row: it waits, sees the gateway
    allocated, and retires only the others. No organization ever gets a retiring gateway."""
    settings(ready_floor=floor_for(3))
    rc, out = scale()
    assert rc == 0 and len(scaler_gateways("ready")) == 3, out
    organization = str(uuid.uuid4())
    with db() as claim:
        claim.autocommit = False
        # Every other ready gateway is taken out of the claimable set for the moment, so the claim
        # takes a scaler gateway.
        others = [row[0] for row in claim.execute(
            "UPDATE gateways SET status = 'quarantined', status_reason = 'autoscale race test' "
            "WHERE status = 'ready' AND name NOT LIKE %s RETURNING name", (PREFIX + "%",)).fetchall()]
        gateway = claim.execute("CALL proc_organizations_start_gateway(%s, interval '10 minutes', NULL, NULL, NULL)",
                                (organization,)).fetchone()[1]
        name = claim.execute("SELECT name FROM gateways WHERE id = %s", (gateway,)).fetchone()[0]
        assert name.startswith(PREFIX)
        settings(ready_floor=0, **RETIRE_NOW)
        result = {}
        scaler = threading.Thread(target=lambda: result.update(zip(("rc", "out"), scale())))
        scaler.start()
        # The scaler's UPDATE waits on the claimed row.
        eventually("the scale-in waiting on the claim", _waiting_on_lock, timeout=120)
        claim.execute("UPDATE gateways SET status = 'ready', status_reason = NULL WHERE name = ANY(%s)", (others,))
        claim.commit()
    scaler.join(300)
    assert result["rc"] == 0, result["out"]
    assert scaler_gateways() == {name: "allocated"}, result["out"]
    assert running_scaler_gateways() == {name}
    with db() as conn:
        conn.execute("CALL proc_organizations_gateways_stop(%s, 'released')", (organization,))
        conn.execute("CALL proc_gateways_set_ready(%s)", (gateway,))


def _waiting_on_lock():
    with db() as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND query LIKE %s", ("UPDATE gateways SET status = 'retiring'%",)).fetchone()[0]


def test_failing_creations_leave_nothing_open_the_breaker_and_raise_the_alert():
    for slot in range(1, 10):
        marker = Path(state_path(ENV, "gateways", "%s%03d" % (PREFIX, slot), "unhealthy"))
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("")
    mark = last_event_id()
    settings(ready_floor=floor_for(1))
    rc, out = scale()
    assert rc != 0, out
    # Which step, which host, why, and what to do.
    assert "localhost" in out and "health" in out.lower() and "creating as-gw-001, as-gw-002, as-gw-003 failed" in out, out
    assert scaler_gateways() == {} and running_scaler_gateways() == set()
    opened = events("autoscale.breaker_opened", mark)
    assert len(opened) == 1 and opened[0]["detail"]["failures"] == 3
    with db() as conn:
        assert conn.execute("SELECT breaker_open_until > now() FROM autoscaler_state").fetchone()[0]

    # Open: the next run says so and creates nothing.
    rc, out = scale()
    assert rc == 0 and "breaker open" in out, out
    assert events("autoscale.decision", mark)[-1]["step"] == "breaker_open"
    eventually("the open breaker in Prometheus", lambda: value("demiurge_gateway_autoscaler_breaker_open") == 1)
    assert value("demiurge_gateway_autoscaler_consecutive_failures") == 3
    eventually("DemiurgeGatewayAutoscalerBreakerOpen firing in Prometheus",
               lambda: prometheus_alert_state("DemiurgeGatewayAutoscalerBreakerOpen") == "firing", timeout=90)

    # Closed again after its time: one healthy creation resets the count.
    for marker in Path(state_path(ENV, "gateways")).glob(PREFIX + "*/unhealthy"):
        marker.unlink()
    with db() as conn:
        conn.execute("UPDATE autoscaler_state SET breaker_open_until = now() - interval '1 second'")
    rc, out = scale()
    assert rc == 0 and len(scaler_gateways("ready")) == 3, out
    with db() as conn:
        assert conn.execute("SELECT consecutive_failures FROM autoscaler_state").fetchone()[0] == 0


@pytest.mark.kill_matrix
@pytest.mark.parametrize("task, offset", [("Decide what to create and retire", 0.3),
                                          ("Start the new gateways and put them in service", 1.5),
                                          ("Settle the run and give the scaler back", 0)])
def test_a_run_killed_midway_leaves_nothing_after_reconcile(task, offset):
    settings(ready_floor=floor_for(2))
    rc, out = run_and_kill("autoscale", task, offset, demiurge_autoscale_lease_seconds=3, **AUTOSCALE_VARS)
    assert "PLAY RECAP" not in out, "the run ended before the kill: " + plain(out)
    time.sleep(3.5)  # the dead run's lease passes
    for attempt in (1, 2):
        rc, out = run("reconcile", **AUTOSCALE_VARS)[::2]
        assert rc == 0, plain(out)
    left = scaler_gateways()
    # Whatever the kill interrupted is gone (or was finished before it): nothing starting or
    # retiring, and nothing running that the pool does not list as in service.
    assert not [name for name, status in left.items() if status in ("starting", "retiring")], left
    assert running_scaler_gateways() == {name for name, status in left.items() if status == "ready"}
    with db() as conn:
        # No live lease: the next run acts at once (a dead run's expired lease may stay as it was).
        assert conn.execute("SELECT holder IS NULL OR lease_expires_at < now() FROM autoscaler_state").fetchone()[0]


# --- event-driven: the shipped rulebook, run by ansible-rulebook --------------------------------

@pytest.fixture
def rulebook(tmp_path):
    """Start extensions/eda/rulebooks/autoscale.yml with its webhook on the given port; the scaler's
    inventory is the test stack's plus AUTOSCALE_VARS for localhost. Stopped afterwards."""
    procs = []

    def start(webhook_port):
        inventory = tmp_path / "inventory"
        inventory.mkdir()
        (inventory / "local_stack.yml").symlink_to(REPO / "inventories/local/local_stack.yml")
        # Loaded after local_stack.yml (sources load in name order), so its values win.
        (inventory / "zz_autoscale.yml").write_text(
            "all:\n  hosts:\n    localhost:\n" + "".join("      %s: %s\n" % item for item in AUTOSCALE_VARS.items()))
        log = open(tmp_path / "rulebook.log", "w")
        env = dict(os.environ, **runner_env(
            PGPASSWORD=os.environ["DEMIURGE_TEST_PG_PASSWORD"], DEMIURGE_EDA_WEBHOOK_PORT=str(webhook_port),
            DEMIURGE_EDA_POOL_DSN="host=127.0.0.1 port=%s dbname=demiurge user=demiurge" % os.environ["DEMIURGE_TEST_PG_PORT"]))
        proc = subprocess.Popen([os.environ["DEMIURGE_TEST_RULEBOOK"], "--rulebook",
                                 str(REPO / "extensions/eda/rulebooks/autoscale.yml"), "-i", str(inventory),
                                 "--env-vars", "DEMIURGE_EDA_POOL_DSN,DEMIURGE_EDA_WEBHOOK_PORT"],
                                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        procs.append(proc)
        eventually("the rulebook listening on the pool's channel and its webhook", lambda: _listening(webhook_port), timeout=120)
        return tmp_path / "rulebook.log"

    yield start
    for proc in procs:
        for pid in [proc.pid] + descendants(proc.pid):
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                pass
        proc.wait(60)


def _listening(port):
    with db() as conn:
        listening = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%%'").fetchone()[0]
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return listening > 0


def _triggered(mark, trigger):
    return [e["detail"] for e in events("autoscale.decision", mark) if e["detail"].get("trigger") == trigger]


@pytest.mark.event_driven
def test_a_burst_of_claims_runs_the_scaler_once(rulebook):
    # Alertmanager posts to base + 96; this rulebook listens elsewhere, so only the pool's events reach it.
    log = rulebook(BASE + 97)
    settings(ready_floor=floor_for(0))
    mark = last_event_id()
    organizations = [str(uuid.uuid4()) for count in range(5)]
    with db() as conn:
        claimed = [conn.execute("CALL proc_organizations_start_gateway(%s, interval '10 minutes', NULL, NULL, NULL)",
                                (organization,)).fetchone()[1] for organization in organizations]
    try:
        decided = eventually("the scaler run by the rulebook", lambda: _triggered(mark, "pool_event"), timeout=120)
        eventually("its gateways ready", lambda: len(scaler_gateways("ready")) == 6, timeout=120)
        time.sleep(12)  # past the throttle's window: the burst caused one run, no more
        assert len(_triggered(mark, "pool_event")) == 1, log.read_text()
        assert decided[0]["create"] == [PREFIX + "%03d" % slot for slot in range(1, 7)]
    finally:
        with db() as conn:
            for organization, gateway in zip(organizations, claimed):
                conn.execute("CALL proc_organizations_gateways_stop(%s, 'released')", (organization,))
                conn.execute("CALL proc_gateways_set_ready(%s)", (gateway,))


@pytest.mark.event_driven
def test_the_ready_below_floor_alert_runs_the_scaler(rulebook):
    """Prometheus evaluates the shipped rule, Alertmanager posts to the rulebook's webhook, and the
    rulebook runs the scaler: no pool event is involved (a setting changed)."""
    log = rulebook(BASE + 96)
    mark = last_event_id()
    settings(ready_floor=floor_for(2))
    decided = eventually("the scaler run on the alert", lambda: _triggered(mark, "alert"), timeout=120)
    assert decided[0]["create"] == [PREFIX + "001", PREFIX + "002", PREFIX + "003"], log.read_text()
    eventually("its gateways ready", lambda: len(scaler_gateways("ready")) == 3, timeout=120)
    assert _triggered(mark, "pool_event") == []
