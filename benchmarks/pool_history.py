"""The pool's claims, releases and pool_info as history grows: a pool with no past against one with
100,000 past allocations (400,000 journal records) and 1,000,000 events, both of 10,000 gateways.

Usage (from the repository root, with the local stack up; its PostgreSQL is used, in two scratch
databases that are dropped afterwards):
    .venv/bin/python benchmarks/pool_history.py [--env dev-001] [--port-base 15000] [--cycles 200]
(--env and --port-base default to DEMIURGE_ENV and DEMIURGE_PORT_BASE, as for the playbooks.)

Both pools have 10,000 gateways, 5,000 of them held by live allocations. Each cycle claims a ready
gateway for a new organization, activates the allocation, takes the release's lease and ends it
(the gateway goes back to ready), calling the pool's own routines as the modules do; between
cycles it runs pool_info as reconcile.yml and the status job call it (the counts, expired leases,
stale resets) and for one organization. The two pools take turns, cycle by cycle, so the fill's
checkpoints and autovacuum weigh on both alike. Each figure is the median over --cycles, in milliseconds,
and the ratio of the pool with history to the one without (1.0: independent of history).
"""

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from monitoring import connection, drop, scratch, scratch_params  # noqa: E402

import psycopg  # noqa: E402

from ansible_collections.demiurge.gateway.plugins.module_utils import _pool_ops  # noqa: E402
from ansible_collections.demiurge.gateway.plugins.module_utils._module import Call  # noqa: E402


def fill(params, history):
    """10,000 gateways, half of them allocated; with history, the past behind them."""
    with psycopg.connect(**connection(params)) as conn:
        conn.execute("ALTER TABLE gateway_events DISABLE TRIGGER gateway_events_notify")
        conn.execute("INSERT INTO gateways (name, api_url, nginx_upstream, status, ready_at) SELECT 'gw-' || i, "
                     "'http://10.0.0.1:' || (20000 + i % 10000), '10.0.0.1:' || (20000 + i % 10000), "
                     "CASE WHEN i <= 5000 THEN 'allocated' ELSE 'ready' END, now() FROM generate_series(1, 10000) i")
        conn.execute("INSERT INTO organizations_gateways (organization_id, gateway_id, status, activated_at) "
                     "SELECT gen_random_uuid(), id, 'active', now() FROM gateways WHERE status = 'allocated'")
        if history:
            conn.execute("CREATE TEMP TABLE g AS SELECT row_number() OVER () AS n, id FROM gateways")
            conn.execute("INSERT INTO organizations_gateways (organization_id, gateway_id, status, started_at, activated_at, "
                         "stopped_at, stop_reason) SELECT gen_random_uuid(), g.id, 'released', now() - make_interval(mins => i), "
                         "now() - make_interval(mins => i), now() - make_interval(mins => i) + interval '30 seconds', 'released' "
                         "FROM generate_series(1, 100000) i JOIN g ON g.n = 1 + i % 10000")
            conn.execute("INSERT INTO allocation_steps (allocation_id, step, host, state, updated_at) "
                         "SELECT og.id, s, '', 'done', og.started_at FROM organizations_gateways og, "
                         "unnest(ARRAY['dns', 'route', 'restore', 'handshake']) s WHERE og.stopped_at IS NOT NULL")
            kinds = ["step.started", "step.done", "allocation.claimed", "allocation.activated", "allocation.released"]
            conn.execute("INSERT INTO gateway_events (at, kind, step, organization_id, gateway_id, allocation_id, detail) "
                         "SELECT p.stopped_at, (%s::text[])[1 + k %% 5], 'dns', p.organization_id, p.gateway_id, p.id, '{}' "
                         "FROM organizations_gateways p, generate_series(1, 10) k WHERE p.stopped_at IS NOT NULL", (kinds,))
        conn.execute("ALTER TABLE gateway_events ENABLE TRIGGER gateway_events_notify")
    with psycopg.connect(**connection(params), autocommit=True) as conn:
        while conn.execute("SELECT func_events_rollup()").fetchone()[0]:
            pass
        conn.execute("INSERT INTO event_sinks (name, last_txid, last_id) SELECT 'log', max(txid), max(id) FROM gateway_events "
                     "HAVING count(*) > 0")
        conn.execute("VACUUM ANALYZE")
        return conn.execute("SELECT (SELECT count(*) FROM organizations_gateways), (SELECT count(*) FROM allocation_steps), "
                            "(SELECT count(*) FROM gateway_events)").fetchone()


def timed(timings, name, work):
    started = time.perf_counter()
    result = work()
    timings.setdefault(name, []).append(time.perf_counter() - started)
    return result


def cycles(pools, count):
    """Claim, activate, read and release `count` times in each pool, alternating between them
    cycle by cycle, so that whatever else the machine does (the fill's checkpoints, autovacuum)
    weighs on both alike. Return, per pool, the median of each operation."""
    timings = [{} for dummy in pools]
    for dummy in range(count):
        for params, pool_timings in zip(pools, timings):
            one_cycle(params, pool_timings)
    return [{name: statistics.median(values) for name, values in pool_timings.items()} for pool_timings in timings]


def one_cycle(params, timings):
    base = dict(params, connect_timeout=5, lease_seconds=600, lease_holder="bench", allocation_id=None, wait_seconds=0.0,
                reason="released", gateway_status="ready", gateway_reason=None)
    info = dict(params, connect_timeout=5, organization=None, gateways=False, allocations=False, stale_seconds=600)
    organization = str(uuid.uuid4())

    def allocation(state):
        return _pool_ops.ensure_allocation(Call(dict(base, organization=organization, state=state), False, False, None))

    timed(timings, "claim", lambda: allocation("present"))
    timed(timings, "activate", lambda: allocation("active"))
    timed(timings, "pool_info", lambda: _pool_ops.pool_info(Call(info, False, False, None)))
    timed(timings, "pool_info_organization",
          lambda: _pool_ops.pool_info(Call(dict(info, organization=organization), False, False, None)))
    timed(timings, "release_lease", lambda: allocation("releasing"))
    timed(timings, "release_end", lambda: allocation("absent"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--env", default=os.environ.get("DEMIURGE_ENV", "dev-001"))
    parser.add_argument("--port-base", type=int, default=int(os.environ.get("DEMIURGE_PORT_BASE", "15000")))
    parser.add_argument("--cycles", type=int, default=200)
    args = parser.parse_args()
    params = scratch_params(args.env, args.port_base)
    fresh = scratch(params, "bench_history_none")
    aged = scratch(params, "bench_history_large")
    try:
        for name, pool, history in (("no history", fresh, False), ("history", aged, True)):
            started = time.perf_counter()
            allocations, steps, events = fill(pool, history)
            print("%-10s: 10,000 gateways, %d allocations, %d journal records, %d events (filled in %.0f s)"
                  % (name, allocations, steps, events, time.perf_counter() - started), flush=True)
        cycles((fresh, aged), 20)  # warm both alike
        without, with_history = cycles((fresh, aged), args.cycles)
        print("%-24s %12s %12s %7s" % ("median, ms", "no history", "history", "ratio"))
        for name in without:
            print("%-24s %12.2f %12.2f %7.2f" % (name, without[name] * 1000, with_history[name] * 1000,
                                                 with_history[name] / without[name]))
    finally:
        drop(fresh)
        drop(aged)


if __name__ == "__main__":
    main()
