"""Time route changes on an nginx edge holding 100, 1,000 and 10,000 organization routes.

Usage (from the repository root, as root, nginx installed):
    .venv/bin/python benchmarks/edge_route_change.py [--sizes 100 1000 10000] [--changes 7] [--concurrent 50]

Renders the edge role's own nginx.conf into a scratch prefix, runs nginx there on a free port,
fills the route shards with N organizations, then times complete route changes through edge_route's logic:
queue, lock, write, `nginx -t` of the whole tree, reload, until the new route answers a request.
Reports per size:
    one        the median of --changes single changes, split into validation and reload-until-served
    concurrent --concurrent jobs (processes) changing one route each at the same moment, from the
               start to the last one's answer, as a ratio to `one` (group commit: they share
               validations and reloads)
    rebuild    every route of the edge written again by one batch (edge_route's routes option)
               after the shards were emptied: a blank edge host rebuilt
"""

import argparse
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import jinja2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / ".build" / "collections"))
from ansible_collections.demiurge.gateway.plugins.module_utils import _edge_route  # noqa: E402
from ansible_collections.demiurge.gateway.plugins.module_utils._daemon import Daemon  # noqa: E402

DOMAIN = "bench.demiurge.test"


def run_command(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_edge(prefix, port):
    for sub in ("logs", "routes", "run", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    shutil.chown(prefix / "tmp", "www-data", "www-data")
    (prefix / "run" / "routes.lock").touch()
    template = jinja2.Template((REPO / "roles/edge/templates/nginx.conf.j2").read_text())
    (prefix / "nginx.conf").write_text(template.render(
        ansible_managed="benchmark", __edge_prefix=str(prefix), edge_worker_processes=2,
        edge_worker_shutdown_timeout="30s", edge_listen_address="127.0.0.1", edge_http_port=port, edge_https_port=0))
    daemon = Daemon("bench-nginx", str(prefix / "run" / "bench.pid"), log_file=str(prefix / "logs" / "out.log"),
                    argv=["/usr/sbin/nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
                    wait_port=port, stop_signal="QUIT")
    daemon.start()
    return daemon


def write_routes(prefix, count):
    """Replace every shard so the edge holds exactly count organizations; returns their ids."""
    shards, organizations = {}, []
    for index in range(count):
        organizations.append(str(uuid.uuid4()))
        label = "org-%s" % organizations[-1]
        entry = _edge_route.render_entry(label, "%s.%s" % (label, DOMAIN), "127.0.0.1:%d" % (30000 + index % 1000), None)
        shards.setdefault(label[4:6], {})[label] = entry
    for old in (prefix / "routes").glob("orgs-*.conf"):
        old.unlink()
    for shard, entries in shards.items():
        (prefix / "routes" / ("orgs-%s.conf" % shard)).write_text(_edge_route.render_shard(entries))
    return organizations


class TimedEdge(_edge_route.Edge):
    """Edge that records when validation ends, to split the total."""
    marks = []

    def test(self):
        verdict = super().test()
        TimedEdge.marks.append(time.perf_counter())
        return verdict


def params(prefix, port, **values):
    return dict({"config_root": str(prefix), "config_file": None, "organization": str(uuid.uuid4()), "domain": DOMAIN,
                 "upstream": "127.0.0.1:39999", "state": "present", "owner": None, "force": False,
                 "listen_url": "http://127.0.0.1:%d" % port, "nginx_binary": "/usr/sbin/nginx",
                 "reload_timeout": 30.0, "lock_timeout": 60.0, "reach_path": None, "reach_timeout": 5}, **values)


def one_change(prefix, port):
    params_ = params(prefix, port)
    TimedEdge.marks = []
    started = time.perf_counter()
    _edge_route.ensure_route(params_, False, run_command, print)
    finished = time.perf_counter()
    return finished - started, TimedEdge.marks[0] - started


def concurrent_changes(prefix, port, jobs):
    """Seconds from the moment `jobs` processes each start one change to the last one's answer."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(jobs + 1)

    def job():
        barrier.wait()
        try:
            _edge_route.ensure_route(params(prefix, port), False, run_command, print)
        finally:
            os._exit(0)

    processes = [context.Process(target=job) for dummy in range(jobs)]
    for process in processes:
        process.start()
    barrier.wait()
    started = time.perf_counter()
    for process in processes:
        process.join(300)
    elapsed = time.perf_counter() - started
    if any(process.exitcode != 0 for process in processes):
        raise SystemExit("a concurrent change failed")
    return elapsed


def rebuild(prefix, port, organizations):
    """Seconds to write every route again, in one batch, onto emptied shards."""
    for shard in (prefix / "routes").glob("orgs-*.conf"):
        shard.unlink()
    run_command(["/usr/sbin/nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-s", "reload"])
    time.sleep(1)
    items = [{"organization": organization, "upstream": "127.0.0.1:%d" % (30000 + index % 1000), "owner": None,
              "state": "present"} for index, organization in enumerate(organizations)]
    started = time.perf_counter()
    done, refused, dummy = _edge_route.change_routes(params(prefix, port, organization=None), items, False, run_command, print)
    elapsed = time.perf_counter() - started
    if refused or len(done) != len(organizations):
        raise SystemExit("the rebuild left routes out: %s" % refused)
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--changes", type=int, default=7)
    parser.add_argument("--concurrent", type=int, default=50, help="jobs changing one route each at the same moment")
    args = parser.parse_args()
    _edge_route.Edge = TimedEdge
    prefix = Path(tempfile.mkdtemp(prefix="edge-bench-"))
    prefix.chmod(0o755)
    port = free_port()
    daemon = start_edge(prefix, port)
    try:
        columns = ("orgs", "one (ms)", "nginx -t (ms)", "reload→served (ms)", "%d at once (ms)" % args.concurrent, "ratio",
                   "rebuild (ms)")
        print("%8s %10s %14s %16s %16s %8s %12s" % columns)
        for size in sorted(args.sizes):
            organizations = write_routes(prefix, size)
            one_change(prefix, port)  # warm: the first reload after a bulk fill loads every route
            samples = [one_change(prefix, port) for dummy in range(args.changes)]
            total = statistics.median(s[0] for s in samples)
            validate = statistics.median(s[1] for s in samples)
            together = concurrent_changes(prefix, port, args.concurrent)
            rebuilt = rebuild(prefix, port, organizations)
            print("%8d %10.1f %14.1f %16.1f %16.1f %8.2f %12.1f" % (
                size, total * 1000, validate * 1000, (total - validate) * 1000, together * 1000, together / total,
                rebuilt * 1000))
    finally:
        daemon.stop(daemon.pid())
        shutil.rmtree(prefix)


if __name__ == "__main__":
    main()
