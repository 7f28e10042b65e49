"""The autoscaler under load, its reaction time, and its own cost at 1,000 gateways.

Usage (from the repository root, with the local stack up; DEMIURGE_ENV / DEMIURGE_PORT_BASE pick it):
    .venv/bin/python benchmarks/autoscale.py [--part load|latency|cost ...] [--schedule 10]
        [--rulebook .build/eda-venv/bin/ansible-rulebook]

The stack's own gateways are taken out of the claimable set (quarantined) for the load and latency
parts and put back afterwards, so the pool holds only what the scaler creates: stand-ins on this
host named bench-gw-NNN on port base + 300 + NNN. Organizations are claimed and released with the
pool's own routines (the claim and the release of allocate.yml and release.yml, without DNS and
routes), so the load is the pool's and this machine's two cores run the scaler, not the edges.

load     A steady ramp while the scaler runs on a schedule (every --schedule seconds, a compressed
         AWX minute): organizations arrive one every 4 s up to 12, stay, then leave one every 3 s,
         then the pool idles. Reports the time with zero ready gateways, the gateways created and
         retired, and overshoot: gateways retired within scale_down_cooldown_seconds of their
         creation. Settings: floor 5 (the floor must cover what arrives between two runs and while
         a gateway starts: a claim every 4 s over a 10 s period plus a start of about 6 s needs 4,
         and one more for margin), step 3, idle 20 s, scale-down cooldown 30 s.
latency  From the ready count falling below the floor (a claim) to the new gateways ready: with the
         scaler on the schedule, and with the rulebook (extensions/eda/rulebooks/autoscale.yml) run
         by ansible-rulebook. The baseline, measured in the same run: one autoscale.yml run started
         by hand at the moment of the drop.
cost     The scaler's decision (pool_autoscale decide, check mode: the same queries and locks, rolled
         back) on a scratch pool of 10 and of 1,000 gateways over 20 hosts, one of them ready, so each
         decision places a step of new gateways; the ratio shows whether its cost grows with the
         pool. The baseline is pool_info on the same pool.
"""

import argparse
import functools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / ".build" / "collections"))
from ansible_collections.demiurge.gateway.plugins.module_utils._autoscale import decide  # noqa: E402
from ansible_collections.demiurge.gateway.plugins.module_utils._module import Call  # noqa: E402
from ansible_collections.demiurge.gateway.plugins.module_utils._paths import state_path  # noqa: E402
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_ops import pool_info  # noqa: E402
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_schema import ensure_schema  # noqa: E402

ENV = os.environ.get("DEMIURGE_ENV", "dev-001")
BASE = int(os.environ.get("DEMIURGE_PORT_BASE", "15000"))
PREFIX = "bench-gw-"
ASIDE = "autoscale benchmark"
SCALER_VARS = ["-e", "gateway_standin_name_prefix=" + PREFIX, "-e", "gateway_standin_port_base=%d" % (BASE + 300)]
PARAMS = {"login_host": "127.0.0.1", "login_port": BASE + 432, "login_user": "demiurge",
          "login_db": "demiurge", "connect_timeout": 10, "create_database": True, "maintenance_db": "postgres"}


@functools.lru_cache(maxsize=None)
def password():
    """The pool's password, read when first needed: the stack creates it on its first start."""
    return Path(state_path(ENV, "secrets", "pool_db_password")).read_text().strip()


def db(name="demiurge"):
    return psycopg.connect(host="127.0.0.1", port=BASE + 432, user="demiurge", password=password(), dbname=name,
                           autocommit=True)


def settings(**values):
    with db() as conn:
        for name, value in values.items():
            conn.execute("UPDATE pool_settings SET value = %s WHERE name = %s", (value, name))


def ready():
    with db() as conn:
        return conn.execute("SELECT count(*) FROM gateways WHERE status = 'ready'").fetchone()[0]


def env():
    return dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), DEMIURGE_ENV=ENV, DEMIURGE_PORT_BASE=str(BASE),
                ANSIBLE_COLLECTIONS_PATH=str(REPO / ".build" / "collections"))


def scaler_run(trigger="manual"):
    started = time.monotonic()
    subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "demiurge.gateway.autoscale",
                    "-i", str(REPO / "inventories/local"), "-e", "demiurge_autoscale_trigger=" + trigger] + SCALER_VARS,
                   env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.monotonic() - started


class Schedule(threading.Thread):
    """The scaler every `every` seconds, as an AWX schedule runs it (a run never overlaps itself here;
    the scaler would refuse it anyway)."""

    def __init__(self, every):
        super().__init__(daemon=True)
        self.every, self.stop, self.runs = every, threading.Event(), []

    def run(self):
        while not self.stop.is_set():
            began = time.monotonic()
            self.runs.append(scaler_run("schedule"))
            self.stop.wait(max(0, self.every - (time.monotonic() - began)))


class Pool:
    """Claims and releases with the pool's routines, and the stack's gateways set aside."""

    def __init__(self):
        self.held = []
        with db() as conn:
            # Those an interrupted run set aside are taken over, so close() puts them back too.
            self.aside = [row[0] for row in conn.execute(
                "UPDATE gateways SET status = 'quarantined', status_reason = %s "
                "WHERE (status = 'ready' OR status_reason = %s) AND name NOT LIKE %s RETURNING id",
                (ASIDE, ASIDE, PREFIX + "%")).fetchall()]

    def claim(self):
        organization = str(uuid.uuid4())
        with db() as conn:
            try:
                gateway = conn.execute("CALL proc_organizations_start_gateway(%s, interval '1 hour', NULL, NULL, NULL)",
                                       (organization,)).fetchone()[1]
            except psycopg.Error:
                return False  # exhausted: counted by the zero-ready time
        self.held.append((organization, gateway))
        return True

    def release(self):
        organization, gateway = self.held.pop(0)
        with db() as conn:
            conn.execute("CALL proc_organizations_gateways_stop(%s, 'released')", (organization,))
            conn.execute("CALL proc_gateways_set_ready(%s)", (gateway,))

    def close(self):
        while self.held:
            self.release()
        with db() as conn:
            conn.execute("UPDATE gateways SET status = 'ready', status_reason = NULL, ready_at = now() WHERE id = ANY(%s)",
                         (self.aside,))


def recover():
    """What an interrupted run left: its organizations leave, the stack's gateways come back, its own
    gateways are retired."""
    with db() as conn:
        held = conn.execute("SELECT a.organization_id, a.gateway_id FROM organizations_gateways a JOIN gateways g "
                            "ON g.id = a.gateway_id WHERE a.stopped_at IS NULL AND g.name LIKE %s",
                            (PREFIX + "%",)).fetchall()
    pool = Pool()
    pool.held = [(str(organization), gateway) for organization, gateway in held]
    try:
        while pool.held:
            pool.release()
        retire_all()
    finally:
        pool.close()


def retire_all():
    settings(ready_floor=0, scale_step=100, idle_seconds=0, scale_down_cooldown_seconds=0)
    with db() as conn:
        conn.execute("UPDATE autoscaler_state SET holder = NULL, lease_expires_at = NULL, breaker_open_until = NULL")
    scaler_run()


def load(args):
    settings(ready_floor=5, scale_step=3, max_total=200, host_capacity=200, scale_up_cooldown_seconds=5,
             scale_down_cooldown_seconds=30, idle_seconds=20)
    with db() as conn:
        mark = conn.execute("SELECT coalesce(max(id), 0) FROM gateway_events").fetchone()[0]
    pool = Pool()
    schedule = Schedule(args.schedule)
    zero, samples, stop = [0.0], [], threading.Event()

    def sample():
        last = time.monotonic()
        while not stop.is_set():
            time.sleep(0.25)
            now, count = time.monotonic(), ready()
            samples.append(count)
            if count == 0:
                zero[0] += now - last
            last = now

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        schedule.start()
        time.sleep(args.schedule + 15)  # the scaler brings the empty pool to its floor first
        sampler.start()
        for arrival in range(12):
            pool.claim()
            time.sleep(4)
        time.sleep(20)
        while pool.held:
            pool.release()
            time.sleep(3)
        time.sleep(90)  # idle: gateways past idle_seconds are retired, down to the floor
    finally:
        stop.set()
        schedule.stop.set()
        schedule.join(300)
        pool.close()
    with db() as conn:
        created = conn.execute("SELECT detail->>'name', at FROM gateway_events WHERE id > %s AND kind = 'gateway.registered' "
                               "AND detail->>'name' LIKE %s", (mark, PREFIX + "%")).fetchall()
        retired = conn.execute("SELECT coalesce(detail->>'name', g.name), e.at FROM gateway_events e LEFT JOIN gateways g "
                               "ON g.id = e.gateway_id WHERE e.id > %s AND e.kind IN ('gateway.removed', 'gateway.retired') "
                               "AND e.run IS NOT NULL", (mark,)).fetchall()
    # A slot's name is used again: a retirement belongs to the latest creation of its name before it.
    overshoot = [name for name, at in retired
                 if (at - max((made for made_name, made in created if made_name == name and made <= at),
                              default=at - timedelta(days=1))).total_seconds() < 30]
    retire_all()
    return {"seconds_with_zero_ready": round(zero[0], 2), "created": len(created), "retired": len(retired),
            "overshoot": len(overshoot), "min_ready_during_load": min(samples) if samples else None,
            "scaler_runs": len(schedule.runs), "scaler_run_median_s": round(statistics.median(schedule.runs), 2)}


def _drop(pool):
    """Claim until fewer gateways than the floor (2) are ready."""
    while ready() >= 2:
        pool.claim()


def _until_floor(floor, timeout=180):
    started = time.monotonic()
    while ready() < floor:
        if time.monotonic() - started > timeout:
            raise SystemExit("the pool did not reach its floor of %s within %s s" % (floor, timeout))
        time.sleep(0.1)
    return time.monotonic() - started


def latency(args):
    settings(ready_floor=2, scale_step=3, max_total=200, host_capacity=200, scale_up_cooldown_seconds=0,
             scale_down_cooldown_seconds=3600, idle_seconds=3600)
    results = {}
    pool = Pool()
    try:
        scaler_run()
        for mode in ("by hand", "schedule", "rulebook"):
            times = []
            for round_ in range(args.rounds):
                retire_all()
                settings(ready_floor=2, scale_step=3, scale_down_cooldown_seconds=3600, idle_seconds=3600)
                scaler_run()
                if mode == "by hand":
                    _drop(pool)
                    dropped = time.monotonic()
                    scaler_run()
                    _until_floor(2)
                    times.append(time.monotonic() - dropped)
                elif mode == "schedule":
                    schedule = Schedule(args.schedule)
                    schedule.start()
                    # The drop lands at a different point of the schedule's period each round.
                    time.sleep(args.schedule * (round_ + 0.5) / args.rounds)
                    _drop(pool)
                    dropped = time.monotonic()
                    _until_floor(2)
                    times.append(time.monotonic() - dropped)
                    schedule.stop.set()
                    schedule.join(300)
                else:
                    with _rulebook(args.rulebook) as started:
                        if not started:
                            break
                        _drop(pool)
                        dropped = time.monotonic()
                        _until_floor(2)
                        times.append(time.monotonic() - dropped)
                while pool.held:
                    pool.release()
            if times:
                results[mode] = {"median_s": round(statistics.median(times), 2), "runs": len(times)}
    finally:
        pool.close()
        retire_all()
    hand = results["by hand"]["median_s"]
    for mode in ("schedule", "rulebook"):
        if mode in results:
            results[mode]["ratio_to_by_hand"] = round(results[mode]["median_s"] / hand, 2)
    return results


class _rulebook:
    def __init__(self, command):
        self.command, self.proc = command, None

    def __enter__(self):
        if not self.command or not Path(self.command).exists():
            return False
        self.tmp = tempfile.TemporaryDirectory()
        inventory = Path(self.tmp.name)
        (inventory / "local_stack.yml").symlink_to(REPO / "inventories/local/local_stack.yml")
        (inventory / "zz_bench.yml").write_text("all:\n  hosts:\n    localhost:\n      gateway_standin_name_prefix: %s\n"
                                                "      gateway_standin_port_base: %d\n" % (PREFIX, BASE + 300))
        port = BASE + 97
        self.proc = subprocess.Popen(
            [self.command, "--rulebook", str(REPO / "extensions/eda/rulebooks/autoscale.yml"), "-i", str(inventory),
             "--env-vars", "DEMIURGE_EDA_POOL_DSN,DEMIURGE_EDA_WEBHOOK_PORT"],
            env=dict(env(), PGPASSWORD=password(), DEMIURGE_EDA_WEBHOOK_PORT=str(port),
                     DEMIURGE_EDA_POOL_DSN="host=127.0.0.1 port=%d dbname=demiurge user=demiurge" % (BASE + 432)),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                with db() as conn:
                    if conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%%'").fetchone()[0]:
                        return True
            except OSError:
                pass
            time.sleep(0.5)
        raise SystemExit("ansible-rulebook did not start")

    def __exit__(self, *exc):
        if self.proc:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(60)
            self.tmp.cleanup()


def cost(args):
    out = {}
    for size in (10, 1000):
        params = dict(PARAMS, login_db="bench_autoscale_" + uuid.uuid4().hex[:8])
        ensure_schema(params, check_mode=False)
        try:
            with db(params["login_db"]) as conn:
                for index in range(size):
                    host = "host-%02d" % (index % 20)
                    conn.execute("INSERT INTO gateways (name, api_url, nginx_upstream, metadata, status, ready_at) "
                                 "VALUES (%s, %s, %s, jsonb_build_object('host', %s::text), %s, now())",
                                 ("%s-gw-%03d" % (host, index // 20 + 1), "http://10.0.0.1:%d" % (20000 + index),
                                  "10.0.0.1:%d" % (20000 + index), host, "ready" if index == 0 else "allocated"))
                # Below the floor with room everywhere: every decision places a step of new gateways.
                conn.execute("UPDATE pool_settings SET value = 5000 WHERE name IN ('max_total', 'host_capacity')")
            hosts = [{"name": "host-%02d" % n, "prefix": "host-%02d-gw-" % n, "listen": "10.0.0.%d" % n, "port_base": 20000,
                      "capacity": None} for n in range(20)]
            call = Call(dict(params, phase="decide", run="bench", hosts=hosts, scale=True, stopped=[], lease_seconds=300,
                             trigger="bench"), True, False, None)
            info = Call(dict(params, organization=None, gateways=False, allocations=False, stale_seconds=300), True, False, None)
            decided, read = [], []
            for round_ in range(args.rounds * 4):
                started = time.perf_counter()
                decide(call)
                decided.append(time.perf_counter() - started)
                started = time.perf_counter()
                pool_info(info)
                read.append(time.perf_counter() - started)
            out[size] = {"decide_median_ms": round(statistics.median(decided) * 1000, 2),
                         "pool_info_median_ms": round(statistics.median(read) * 1000, 2)}
        finally:
            with db("postgres") as conn:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(params["login_db"])))
    out["decide_1000_over_10"] = round(out[1000]["decide_median_ms"] / out[10]["decide_median_ms"], 2)
    out["pool_info_1000_over_10"] = round(out[1000]["pool_info_median_ms"] / out[10]["pool_info_median_ms"], 2)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--part", action="append", choices=["load", "latency", "cost"])
    parser.add_argument("--schedule", type=float, default=10, help="seconds between scheduled scaler runs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rulebook", default=str(REPO / ".build" / "eda-venv" / "bin" / "ansible-rulebook"))
    args = parser.parse_args()
    PARAMS["login_password"] = password()
    with db() as conn:
        saved = dict(conn.execute("SELECT name, value FROM pool_settings").fetchall())
    report = {}
    try:
        recover()
        for part in args.part or ["cost", "latency", "load"]:
            report[part] = {"cost": cost, "latency": latency, "load": load}[part](args)
            print(part, json.dumps(report[part]), flush=True)
    finally:
        settings(**saved)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
