"""Monitoring on the real stack: the pool exporter's metrics scraped by Prometheus, the shipped alert
rules evaluated by it, Alertmanager posting to a webhook receiver, and the event log relay.

The test stack runs with the monitoring part on, scraping and evaluating every second, with the
exhaustion and stuck alerts' hold times shortened and Alertmanager posting to TEST_PORT_BASE + 95
(tests/system/monitoring_vars.yml)."""

import json
import os
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.request import urlopen
from urllib.parse import urlencode

import pytest

from ansible_collections.demiurge.gateway.plugins.module_utils._module import Call
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_events import prune_events
from ansible_collections.demiurge.gateway.plugins.module_utils._paths import state_path
from conftest import connect
from invariants import db
from lifecycle import ENV, REPO, eventually, plain, run, run_and_kill, wait_leases_expired

BASE = int(os.environ.get("DEMIURGE_TEST_PORT_BASE", "16000"))
PROMETHEUS = "http://127.0.0.1:%d" % (BASE + 90)
ALERTMANAGER = "http://127.0.0.1:%d" % (BASE + 93)
EXPORTER = "http://127.0.0.1:%d/metrics" % (BASE + 187)

pytestmark = pytest.mark.usefixtures("invariants_hold")


def query(expr):
    with urlopen("%s/api/v1/query?%s" % (PROMETHEUS, urlencode({"query": expr})), timeout=10) as answer:
        return {json.dumps(item["metric"], sort_keys=True): float(item["value"][1])
                for item in json.load(answer)["data"]["result"]}


def value(expr):
    found = query(expr)
    return sum(found.values()) if found else None


def firing(alertname):
    with urlopen("%s/api/v2/alerts?%s" % (ALERTMANAGER, urlencode({"filter": 'alertname="%s"' % alertname})),
                 timeout=10) as answer:
        return [alert for alert in json.load(answer) if alert["status"]["state"] == "active"]


def prometheus_alert_state(alertname):
    with urlopen("%s/api/v1/alerts" % PROMETHEUS, timeout=10) as answer:
        states = [alert["state"] for alert in json.load(answer)["data"]["alerts"] if alert["labels"]["alertname"] == alertname]
    return states[0] if states else "inactive"


class Receiver:
    """Alertmanager's webhook receiver: keeps every notification posted to it."""

    def __init__(self, port):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def notified(self, alertname, status):
        return [note for note in self.received if note["status"] == status
                and any(alert["labels"]["alertname"] == alertname for alert in note["alerts"])]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    receiver = Receiver(BASE + 95)
    yield receiver
    receiver.close()


@pytest.fixture
def two_ready():
    """Leave exactly two gateways ready: the others are taken out of service for the test (and put
    back), so two real allocations exhaust the pool."""
    with db() as conn:
        spare = [row[0] for row in conn.execute(
            "SELECT id FROM gateways WHERE status = 'ready' ORDER BY created_at, id OFFSET 2").fetchall()]
        conn.execute("UPDATE gateways SET status = 'quarantined', status_reason = 'held out by a test' WHERE id = ANY(%s)",
                     (spare,))
    yield
    with db() as conn:
        conn.execute("UPDATE gateways SET status = 'ready', status_reason = NULL WHERE id = ANY(%s)", (spare,))


def test_exhaustion_fires_in_alertmanager_reaches_the_webhook_and_resolves(receiver, two_ready):
    organizations = [uuid.uuid4() for dummy in range(3)]
    for organization in organizations[:2]:
        rc, dummy, out = run("allocate", organization)
        assert rc == 0, plain(out)[-2000:]
    eventually("ready gateways at 0 in Prometheus", lambda: value('demiurge_gateway_pool_gateways{status="ready"}') == 0)

    rc, dummy, out = run("allocate", organizations[2])
    assert rc != 0 and "Pool exhausted" in plain(out), plain(out)[-2000:]
    eventually("the refusal counted", lambda: (value('demiurge_gateway_allocations_total{result="refused"}') or 0) >= 1)

    eventually("PoolExhausted active in Alertmanager", lambda: firing("DemiurgeGatewayPoolExhausted"))
    note = eventually("PoolExhausted posted to the webhook", lambda: receiver.notified("DemiurgeGatewayPoolExhausted", "firing"))
    annotations = note[0]["alerts"][0]["annotations"]
    assert annotations["runbook_url"].endswith("docs/runbooks.md#pool-exhausted"), annotations
    assert eventually("AllocationsRefused active", lambda: firing("DemiurgeGatewayAllocationsRefused"))

    for organization in organizations[:2]:
        rc, dummy, out = run("release", organization)
        assert rc == 0, plain(out)[-2000:]
    eventually("PoolExhausted resolved at the webhook", lambda: receiver.notified("DemiurgeGatewayPoolExhausted", "resolved"))
    assert not firing("DemiurgeGatewayPoolExhausted")

    # Every event of these runs reached the log stream, once its writers' transactions ended.
    with db() as conn:
        wanted = {row[0] for row in conn.execute(
            "SELECT id FROM gateway_events WHERE organization_id = ANY(%s)", ([str(org) for org in organizations],))}
    log_file = state_path(ENV, "log", "events.jsonl")

    def shipped():
        with open(log_file, encoding="utf-8") as lines:
            return wanted <= {json.loads(line)["id"] for line in lines}
    eventually("the events in %s" % log_file, shipped, timeout=30)
    kinds = query("demiurge_gateway_events_total")
    assert any('"allocation.refused"' in key for key in kinds) and any('"allocation.released"' in key for key in kinds)


def test_an_interrupted_allocation_shows_stuck_and_clears_after_reconcile():
    organization = uuid.uuid4()
    before = value('demiurge_gateway_reconcile_repairs_total{kind="rolled_back"}') or 0
    rc, out = run_and_kill("allocate", "Restore the organization's data", 0, organization, allocation_lease_seconds=2)
    assert rc != 0, out[-2000:]
    wait_leases_expired()
    eventually("the stuck allocation in Prometheus", lambda: value("demiurge_gateway_stuck_allocations") == 1)
    eventually("AllocationStuck firing", lambda: prometheus_alert_state("DemiurgeGatewayAllocationStuck") == "firing")

    started = time.time()
    rc, dummy, out = run("reconcile")
    assert rc == 0, plain(out)[-2000:]
    eventually("no stuck allocation", lambda: value("demiurge_gateway_stuck_allocations") == 0)
    eventually("AllocationStuck resolved", lambda: prometheus_alert_state("DemiurgeGatewayAllocationStuck") == "inactive")
    # One scrape after the repair, the counter and the job's last success show it.
    eventually("the repair counted", lambda: value('demiurge_gateway_reconcile_repairs_total{kind="rolled_back"}') == before + 1)
    eventually("reconcile's success recorded",
               lambda: value('demiurge_gateway_job_last_success_timestamp_seconds{periodic_job="reconcile"}') >= started - 1)


def scrape():
    with urlopen(EXPORTER, timeout=10) as answer:
        text = answer.read().decode()
    counters = {}
    for line in text.splitlines():
        if line.startswith("demiurge_gateway_") and ("_total{" in line or "_total " in line or "_count{" in line):
            name, number = line.rsplit(" ", 1)
            counters[name] = float(number)
    return text, counters


def test_the_metrics_pass_promtool_and_counters_survive_pruning_and_a_new_exporter(pg_params):
    text, before = scrape()
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert before, "no counters scraped"

    # Every event old enough, and every sink caught up: pruning (which rolls up first) deletes them all.
    with db() as conn:
        conn.execute("UPDATE gateway_events SET at = at - interval '3 days'")
        conn.execute("UPDATE event_sinks SET (last_txid, last_id) = (SELECT max(txid), max(id) FROM gateway_events) "
                     "WHERE name <> 'rollup'")
    call = Call(dict(pg_params, older_than_days=2.0, batch_size=1000), False, False, None)
    assert prune_events(call)["pruned"] > 0
    with db() as conn:
        assert conn.execute("SELECT count(*) FROM gateway_events").fetchone()[0] == 0

    # A second exporter, started now from the same queries, reads the same counters.
    port = BASE + 188
    env = dict(os.environ, DATA_SOURCE_URI="127.0.0.1:%s/demiurge?sslmode=disable" % pg_params["login_port"],
               DATA_SOURCE_USER="demiurge", DATA_SOURCE_PASS=pg_params["login_password"])
    exporter = subprocess.Popen(["prometheus-postgres-exporter", "--web.listen-address=127.0.0.1:%d" % port,
                                 "--extend.query-path=%s" % (REPO / "roles/monitoring/files/queries.yml"),
                                 "--disable-default-metrics", "--disable-settings-metrics"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def fresh():
            try:
                with urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as answer:
                    return answer.read().decode()
            except OSError:
                return None
        fresh_text = eventually("the second exporter", fresh, timeout=20)
    finally:
        exporter.terminate()
        exporter.wait(10)
    after = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in fresh_text.splitlines()
             if line.rsplit(" ", 1)[0] in before}
    assert after == before


def test_the_rollup_never_skips_an_event_whose_transaction_commits_late(scratch_db):
    """Both orders of (transaction id, event id): an event of a transaction still running holds the
    rollup back, and is counted once it commits, with every event after it."""
    def rollup():
        with connect(scratch_db, autocommit=True) as conn:
            return conn.execute("SELECT func_events_rollup()").fetchone()[0]

    def counted(kind):
        with connect(scratch_db, autocommit=True) as conn:
            row = conn.execute("SELECT value FROM event_counters WHERE kind = %s", (kind,)).fetchone()
        return row[0] if row else 0

    for late_takes_its_id_first in (True, False):
        late, other = connect(scratch_db), connect(scratch_db, autocommit=True)
        try:
            if late_takes_its_id_first:
                late.execute("SELECT pg_current_xact_id()")  # older transaction, newer event id
            else:
                late.execute("INSERT INTO gateway_events (kind) VALUES ('test.late')")
            other.execute("INSERT INTO gateway_events (kind) VALUES ('test.other')")
            if late_takes_its_id_first:
                late.execute("INSERT INTO gateway_events (kind) VALUES ('test.late')")
            before = counted("test.other")
            rollup()
            assert counted("test.other") == before, "an event after a running transaction's was counted early"
            late.commit()
            rollup()
            assert counted("test.other") == before + 1
        finally:
            late.close()
            other.close()
    assert counted("test.late") == 2 and rollup() == 0
