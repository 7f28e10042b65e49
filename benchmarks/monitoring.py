"""What monitoring costs: one scrape of the pool's metrics at scale, and events per allocation.

Usage (from the repository root, with the local stack up with its monitoring part,
`-e local_stack_monitoring=true`; it uses the stack's PostgreSQL and prometheus-postgres-exporter,
and scratch databases it drops afterwards):
    .venv/bin/python benchmarks/monitoring.py [--env dev-001] [--port-base 15000] [--events 1000000]

Scrape: the exporter with the collection's queries, over a pool of 10,000 gateways, 10,000 live
allocations, 30,000 snapshots and --events events (counters filled to match), against the same
exporter over an empty pool (the baseline). Median of 20 scrapes each.
Events: the SQL of 300 allocations (claim, four steps journaled started and done on one connection
each as the action layer does, activate) with
events, against 300 with every event insert suppressed (a rule on gateway_events), alternating.
Targets: a scrape at most 200 ms; events at most 5 ms per allocation.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / ".build" / "collections"))
from ansible_collections.demiurge.gateway.plugins.module_utils._paths import state_path  # noqa: E402


def scratch(params, name):
    import psycopg
    from ansible_collections.demiurge.gateway.plugins.module_utils._pool_schema import ensure_schema

    params = dict(params, login_db=name)
    with psycopg.connect(**connection(dict(params, login_db="postgres")), autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
    ensure_schema(params, check_mode=False)
    return params


def drop(params):
    import psycopg
    with psycopg.connect(**connection(dict(params, login_db="postgres")), autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % params["login_db"])


def connection(params):
    return {"host": params["login_host"], "port": params["login_port"], "user": params["login_user"],
            "password": params["login_password"], "dbname": params["login_db"]}


def fill(params, events):
    """A pool at scale, written in bulk (without notifications), then rolled up."""
    import psycopg
    with psycopg.connect(**connection(params)) as conn:
        conn.execute("ALTER TABLE gateway_events DISABLE TRIGGER gateway_events_notify")
        conn.execute("INSERT INTO gateways (name, api_url, nginx_upstream, status) SELECT 'gw-' || i, "
                     "'http://10.0.0.1:' || (20000 + i % 10000), '10.0.0.1:' || (20000 + i % 10000), 'allocated' "
                     "FROM generate_series(1, 10000) i")
        conn.execute("INSERT INTO organizations_gateways (organization_id, gateway_id, status, activated_at) "
                     "SELECT gen_random_uuid(), id, 'active', now() FROM gateways")
        conn.execute("INSERT INTO snapshot_inventory (organization_id, snapshot_id, size_bytes, stored_at) "
                     "SELECT og.organization_id, 's' || k, 1048576, now() - make_interval(hours => k) "
                     "FROM organizations_gateways og, generate_series(1, 3) k")
        kinds = ["step.started", "step.done", "allocation.claimed", "allocation.activated", "allocation.released"]
        conn.execute("INSERT INTO gateway_events (at, kind, step, organization_id, detail) "
                     "SELECT now() - make_interval(secs => i), (%s::text[])[1 + i %% 5], 'dns', gen_random_uuid(), '{}' "
                     "FROM generate_series(1, %s) i", (kinds, events))
        conn.execute("ALTER TABLE gateway_events ENABLE TRIGGER gateway_events_notify")
    # The rollup folds the million events (100,000 a call), as the first scrapes after an upgrade
    # would; the timed scrapes then find them folded, as every later scrape does.
    with psycopg.connect(**connection(params), autocommit=True) as conn:
        started = time.perf_counter()
        while conn.execute("SELECT func_events_rollup()").fetchone()[0]:
            pass
        print("rolled up %d events in %.1f s" % (events, time.perf_counter() - started))
        conn.execute("INSERT INTO event_sinks (name, last_txid, last_id) SELECT 'log', max(txid), max(id) FROM gateway_events")
    with psycopg.connect(**connection(params), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape_median(params, rounds=20):
    if shutil.which("prometheus-postgres-exporter") is None:
        sys.exit("prometheus-postgres-exporter is not installed: bring the local stack up with "
                 "-e local_stack_monitoring=true (README, docs/howto-monitoring.md), then run this again")
    port = free_port()
    env = dict(os.environ, DATA_SOURCE_URI="%s:%s/%s?sslmode=disable" % (params["login_host"], params["login_port"],
                                                                         params["login_db"]),
               DATA_SOURCE_USER=params["login_user"], DATA_SOURCE_PASS=params["login_password"])
    exporter = subprocess.Popen(["prometheus-postgres-exporter", "--web.listen-address=127.0.0.1:%d" % port,
                                 "--extend.query-path=%s" % (REPO / "roles/monitoring/files/queries.yml"),
                                 "--disable-default-metrics", "--disable-settings-metrics"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = "http://127.0.0.1:%d/metrics" % port
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                body = urllib.request.urlopen(url, timeout=5).read().decode()
                if "demiurge_gateway_pool_gateways" in body:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the exporter did not answer with the pool's metrics"
            time.sleep(0.2)
        timings = []
        for dummy in range(rounds):
            started = time.perf_counter()
            urllib.request.urlopen(url, timeout=10).read()
            timings.append(time.perf_counter() - started)
        return statistics.median(timings)
    finally:
        exporter.terminate()
        exporter.wait(10)


def allocations(params, count):
    """Median seconds of an allocation's SQL (claim, 4 steps started and done, activate) without
    events and with them. The two alternate, allocation by allocation, so drift on the machine
    (autovacuum after the fill, a checkpoint) weighs on both alike."""
    import psycopg
    from ansible_collections.demiurge.gateway.plugins.module_utils import _pool_ops
    from ansible_collections.demiurge.gateway.plugins.module_utils._module import Call

    with psycopg.connect(**connection(params), autocommit=True) as conn:
        conn.execute("INSERT INTO gateways (name, api_url, nginx_upstream, status) SELECT 'bench-' || i, "
                     "'http://127.0.0.1:1', '127.0.0.1:1', 'ready' FROM generate_series(1, 4) i ON CONFLICT DO NOTHING")
    base = dict(params, connect_timeout=5, state="present", lease_seconds=600, lease_holder="bench", allocation_id=None,
                wait_seconds=0.0, reason="released", gateway_status="ready", gateway_reason=None)
    timings = {True: [], False: []}
    for number in range(count * 2):
        suppress = (number // 2 + number) % 2 == 0  # on, off, off, on, on, off, ...
        with psycopg.connect(**connection(params), autocommit=True) as conn:
            conn.execute("DROP RULE IF EXISTS no_events ON gateway_events")
            if suppress:
                conn.execute("CREATE RULE no_events AS ON INSERT TO gateway_events DO INSTEAD NOTHING")
        organization = str(uuid.uuid4())
        started = time.perf_counter()
        claimed = _pool_ops.ensure_allocation(Call(dict(base, organization=organization), False, False, None))
        journal = dict(base, allocation_id=claimed["allocation"]["allocation_id"], host="")
        for step in ("dns", "route", "restore", "handshake"):
            # As the action layer journals a step: both records on one connection (plugin_utils/_journal.py).
            with psycopg.connect(**connection(params)) as conn:
                _pool_ops.write_step(dict(journal, step=step), "started", conn=conn)
                _pool_ops.write_step(dict(journal, step=step), "done", conn=conn)
        _pool_ops.ensure_allocation(Call(dict(base, organization=organization, state="active"), False, False, None))
        timings[suppress].append(time.perf_counter() - started)
        # Ending it is the release's cost, not measured here; it makes the gateway ready again.
        with psycopg.connect(**connection(params), autocommit=True) as conn:
            conn.execute("CALL proc_organizations_gateways_stop(%s, 'released')", (organization,))
            conn.execute("UPDATE gateways SET status = 'ready' WHERE name LIKE 'bench-%'")
    with psycopg.connect(**connection(params), autocommit=True) as conn:
        conn.execute("DROP RULE IF EXISTS no_events ON gateway_events")
    return statistics.median(timings[True]), statistics.median(timings[False])


def scratch_params(env, port_base):
    """Connection options for scratch databases on the stack's PostgreSQL (env, port base)."""
    return {"login_host": "127.0.0.1", "login_port": port_base + 432, "login_user": "demiurge",
            "login_db": "demiurge", "connect_timeout": 10, "create_database": True, "maintenance_db": "postgres",
            "login_password": Path(state_path(env, "secrets", "pool_db_password")).read_text().strip()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--env", default=os.environ.get("DEMIURGE_ENV", "dev-001"))
    parser.add_argument("--port-base", type=int, default=int(os.environ.get("DEMIURGE_PORT_BASE", "15000")))
    parser.add_argument("--events", type=int, default=1000000)
    parser.add_argument("--allocations", type=int, default=300)
    args = parser.parse_args()
    params = scratch_params(args.env, args.port_base)

    empty = scratch(params, "bench_metrics_empty")
    large = scratch(params, "bench_metrics_large")
    try:
        started = time.perf_counter()
        fill(large, args.events)
        print("filled 10,000 gateways, 10,000 live allocations, 30,000 snapshots, %d events in %.0f s"
              % (args.events, time.perf_counter() - started))
        baseline, loaded = scrape_median(empty), scrape_median(large)
        print("scrape, empty pool (baseline): %6.1f ms" % (baseline * 1000))
        print("scrape, at scale:              %6.1f ms  (%.2fx the baseline; target <= 200 ms: %s)"
              % (loaded * 1000, loaded / baseline, "met" if loaded <= 0.2 else "MISSED"))

        without, with_events = allocations(empty, args.allocations)
        print("allocation SQL without events (baseline): %6.2f ms" % (without * 1000))
        print("allocation SQL with events:               %6.2f ms  (%.2fx; +%.2f ms; target <= +5 ms: %s)"
              % (with_events * 1000, with_events / without, (with_events - without) * 1000,
                 "met" if with_events - without <= 0.005 else "MISSED"))
    finally:
        drop(empty)
        drop(large)


if __name__ == "__main__":
    main()
