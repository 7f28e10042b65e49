# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ship the pool's events to one sink: a JSON-lines log file or a webhook.

Reads gateway_events in (txid, id) order, only from transactions older than every
running one (so an event that commits late is never skipped), delivers a batch,
then advances the sink's cursor in event_sinks: at least once, never lost; each
line and webhook item carries the event's id for de-duplication. Wakes on the
NOTIFY channel demiurge_gateway_events, and polls anyway. It runs beside the life
cycle, so a slow or failing sink never blocks or fails an allocation.

Connection: the PG* environment variables. Needs psycopg 3.
"""

import argparse
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request

import psycopg

CHANNEL = "demiurge_gateway_events"
COLUMNS = ("id", "at", "kind", "organization_id", "gateway_id", "allocation_id", "step", "host", "cause", "run",
           "duration_seconds", "detail")
READ = ("SELECT txid::text, %s FROM gateway_events WHERE (txid, id) > (%%s::xid8, %%s) "
        "AND txid < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY txid, id LIMIT %%s" % ", ".join(COLUMNS))


def log(message):
    print(time.strftime("%Y-%m-%dT%H:%M:%S"), message, file=sys.stderr, flush=True)


def as_json(row):
    record = {}
    for name, value in zip(COLUMNS, row):
        if hasattr(value, "isoformat"):
            value = value.isoformat()
        elif value is not None and not isinstance(value, (int, float, str, dict, list)):
            value = str(value)
        record[name] = value
    return record


class LogFile:
    """Appends one JSON object per line; the file is reopened on every batch, so a rotation by
    rename (logrotate without copytruncate) needs no signal."""

    def __init__(self, path):
        self.path = path

    def deliver(self, events):
        with open(self.path, "a", encoding="utf-8") as out:
            for record in events:
                out.write(json.dumps(record, sort_keys=True) + "\n")
            out.flush()
            os.fsync(out.fileno())


class Webhook:
    """POSTs a batch as {"events": [...]}; any 2xx answer is delivery. Each try is bounded by the
    timeout; failures are retried with a doubling pause, and the batch is never dropped."""

    def __init__(self, url, timeout, retries):
        self.url, self.timeout, self.retries = url, timeout, retries

    def deliver(self, events):
        body = json.dumps({"events": events}).encode()
        pause = 0.5
        for attempt in range(1, self.retries + 1):
            request = urllib.request.Request(self.url, data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    if 200 <= answer.status < 300:
                        return
                    cause = "HTTP %s" % answer.status
            except (urllib.error.URLError, OSError) as exc:
                cause = str(exc)
            log("webhook %s: try %s of %s failed (%s)" % (self.url, attempt, self.retries, cause))
            time.sleep(pause)
            pause = min(pause * 2, 30)
        raise OSError("webhook %s refused %s events after %s tries" % (self.url, len(events), self.retries))


def cursor(conn, sink):
    conn.execute("INSERT INTO event_sinks (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", (sink,))
    row = conn.execute("SELECT last_txid::text, last_id FROM event_sinks WHERE name = %s", (sink,)).fetchone()
    return row[0], row[1]


def drain(conn, sink, target, batch):
    """Deliver every visible event after the sink's cursor; how many were delivered."""
    txid, last_id = cursor(conn, sink)
    total = 0
    while True:
        rows = conn.execute(READ, (txid, last_id, batch)).fetchall()
        if not rows:
            return total
        target.deliver([as_json(row[1:]) for row in rows])
        txid, last_id = rows[-1][0], rows[-1][1]
        conn.execute("UPDATE event_sinks SET last_txid = %s::xid8, last_id = %s, last_at = %s, updated_at = now() "
                     "WHERE name = %s", (txid, last_id, rows[-1][2], sink))
        total += len(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--sink", required=True, help="this sink's name, the key of its cursor in event_sinks")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--log-file", help="append JSON lines to this file")
    where.add_argument("--webhook-url", help="POST batches of events to this URL")
    parser.add_argument("--timeout", type=float, default=5, help="seconds per webhook try")
    parser.add_argument("--retries", type=int, default=5, help="webhook tries per round before pausing")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--poll", type=float, default=1, help="seconds between reads without a notification")
    args = parser.parse_args()
    if args.sink == "rollup":
        parser.error("sink name 'rollup' is the metrics' own cursor; choose another")
    target = LogFile(args.log_file) if args.log_file else Webhook(args.webhook_url, args.timeout, args.retries)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        try:
            with psycopg.connect(autocommit=True, application_name="demiurge-event-relay-" + args.sink) as conn:
                conn.execute("LISTEN " + CHANNEL)
                log("sink %s: connected" % args.sink)
                while True:
                    shipped = drain(conn, args.sink, target, args.batch)
                    if shipped:
                        log("sink %s: shipped %s events" % (args.sink, shipped))
                    # An event of a transaction still running is not visible yet: poll soon again.
                    for dummy in conn.notifies(timeout=args.poll, stop_after=1):
                        pass
        except (psycopg.Error, OSError) as exc:
            log("sink %s: %s; trying again in 5 s" % (args.sink, exc))
            time.sleep(5)


if __name__ == "__main__":
    main()
