"""The pool operations' SQL against a scripted connection: which statements run, with which
values, and what each answer leads to."""

import datetime

import pytest

from ansible_collections.demiurge.gateway.plugins.module_utils import _pool_ops
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import InvalidInputError, LeaseHeldError
from ansible_collections.demiurge.gateway.plugins.module_utils._module import Call

ORG = "0b5e9b7c-1a2b-4c3d-8e9f-001122334455"
LEASE = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.timezone.utc)


def allocation_row(status="allocating", holder="run-1", expired=False, stopped=None):
    return ("a1", ORG, status, LEASE, None, stopped, None, LEASE, holder, expired, "g1", "gw-1",
            "http://127.0.0.1:21001", "127.0.0.1:21001", "allocated", {"data_dir": "/d"})


class Rows:
    def __init__(self, rows):
        self.rows = rows

    def fetchone(self):
        return self.rows[0] if self.rows else None

    def fetchall(self):
        return self.rows


class Connection:
    """Answers each statement from `script`: (text the SQL contains, rows), first match wins."""

    broken = False

    def __init__(self, script):
        self.script, self.statements = script, []

    def execute(self, sql, params=()):
        self.statements.append((" ".join(sql.split()), params))
        for needle, rows in self.script:
            if needle in sql:
                return Rows(rows)
        return Rows([])

    def commit(self):
        self.statements.append(("COMMIT", ()))

    def rollback(self):
        self.statements.append(("ROLLBACK", ()))

    def close(self):
        pass

    def ran(self, needle):
        return [params for sql, params in self.statements if needle in sql]


PARAMS = {"login_host": "db", "login_port": 5432, "login_user": "demiurge", "login_password": None, "login_db": "demiurge",
          "connect_timeout": 1, "organization": ORG, "state": "present", "lease_seconds": 60, "lease_holder": None,
          "allocation_id": None, "wait_seconds": 0.0, "reason": "released", "gateway_status": "resetting",
          "gateway_reason": None, "organizations": None}


@pytest.fixture
def db(monkeypatch):
    conns = []

    def use(*script):
        conn = Connection(list(script))
        conns.append(conn)
        monkeypatch.setattr(_pool_ops, "connect", lambda params: conn)
        return conn
    return use


def call(check_mode=False, **params):
    return Call(dict(PARAMS, **params), check_mode, True, None)


def test_a_new_claim_records_this_run_as_lease_holder(db):
    conn = db(("CALL proc_organizations_start_gateway", [("a1", "g1", True)]), ("FROM organizations_gateways og", [allocation_row()]))
    result = _pool_ops.ensure_allocation(call(lease_holder="run-1"))
    assert result["created"] and result["changed"] and result["lease_holder"] == "run-1"
    assert conn.ran("SET lease_holder = %s WHERE id = %s") == [("run-1", "a1")]
    assert conn.statements[-1] == ("COMMIT", ())


def test_a_claim_for_an_active_organization_changes_nothing(db):
    conn = db(("CALL proc_organizations_start_gateway", [("a1", "g1", False)]),
              ("FROM organizations_gateways og", [allocation_row("active", holder=None)]))
    result = _pool_ops.ensure_allocation(call())
    assert not result["changed"] and not result["created"]
    assert conn.ran("SET lease_holder") == []


def test_a_claim_during_a_release_fails_naming_the_release(db):
    db(("CALL proc_organizations_start_gateway", [("a1", "g1", False)]),
       ("FROM organizations_gateways og", [allocation_row("releasing", holder="run-9")]))
    with pytest.raises(LeaseHeldError, match="being released by run run-9"):
        _pool_ops.ensure_allocation(call())


def test_a_claim_never_takes_over_another_runs_allocation(db):
    db(("CALL proc_organizations_start_gateway", [("a1", "g1", False)]),
       ("FROM organizations_gateways og", [allocation_row("allocating", holder="run-9", expired=True)]))
    with pytest.raises(LeaseHeldError, match="left allocating by run run-9 .*, whose lease has expired"):
        _pool_ops.ensure_allocation(call())


def test_only_the_lease_holder_activates(db):
    conn = db(("FROM organizations_gateways og", [allocation_row(holder="run-1")]))
    with pytest.raises(LeaseHeldError, match="held by run run-1 .* may not activate it"):
        _pool_ops.ensure_allocation(call(state="active", lease_holder="run-2"))
    assert conn.ran("SET status = 'active'") == []
    conn = db(("RETURNING extract(epoch", [(1.5,)]), ("FROM organizations_gateways og", [allocation_row(holder="run-1")]))
    assert _pool_ops.ensure_allocation(call(state="active", lease_holder="run-1"))["changed"]
    assert conn.ran("lease_holder = NULL, tmp_handshake_token = NULL") == [("a1",)]
    activated = conn.ran("INSERT INTO gateway_events")[0]
    assert activated[0] == "allocation.activated" and activated[7] == "run-1" and activated[8] == 1.5


def test_check_mode_predicts_the_activation_of_its_own_predicted_claim(db):
    conn = db()
    assert _pool_ops.ensure_allocation(call(check_mode=True, state="active", allocation_id="a1"))["changed"]
    assert conn.statements[-1] == ("ROLLBACK", ())
    with pytest.raises(InvalidInputError, match="holds no gateway to activate"):
        _pool_ops.ensure_allocation(call(state="active"))


def test_ending_an_allocation_returns_its_gateway_in_the_same_transaction(db):
    conn = db(("FROM organizations_gateways og", [allocation_row("releasing", holder="run-1")]),
              ("FROM gateways WHERE name", [("g1", "gw-1", "http://x:1", "127.0.0.1:1", "resetting", None, {}, LEASE, LEASE, None)]))
    _pool_ops.ensure_allocation(call(state="absent", lease_holder="run-1", gateway_status="ready"))
    order = [sql for sql, dummy in conn.statements]
    stop = next(i for i, sql in enumerate(order) if "proc_organizations_gateways_stop" in sql)
    ready = next(i for i, sql in enumerate(order) if "proc_gateways_set_ready" in sql)
    assert stop < ready < order.index("COMMIT")


def test_a_quarantine_records_its_reason(db):
    conn = db(("FROM organizations_gateways og", [allocation_row("allocating", holder="run-1")]),
              ("FROM gateways WHERE name", [("g1", "gw-1", "http://x:1", "127.0.0.1:1", "resetting", None, {}, LEASE, LEASE, None)]))
    _pool_ops.ensure_allocation(call(state="absent", lease_holder="run-1", reason="failed", gateway_status="quarantined",
                                     gateway_reason="not scrubbed"))
    assert conn.ran("UPDATE gateways SET status = %s, status_reason = %s") == [("quarantined", "not scrubbed", "g1")]


def test_another_run_may_not_end_an_allocation_in_progress(db):
    conn = db(("FROM organizations_gateways og", [allocation_row("allocating", holder="run-1")]))
    with pytest.raises(LeaseHeldError, match="may not end it"):
        _pool_ops.ensure_allocation(call(state="absent", lease_holder="run-2"))
    assert conn.ran("proc_organizations_gateways_stop") == []


def test_a_release_takes_over_a_release_whose_run_died(db):
    conn = db(("FROM organizations_gateways og", [allocation_row("releasing", holder="run-9", expired=True)]))
    result = _pool_ops.ensure_allocation(call(state="releasing", lease_holder="run-1"))
    assert result["held"] and result["changed"]
    assert conn.ran("SET status = %s, lease_holder = %s") == [("releasing", "run-1", 60, "releasing", "a1")]
    assert conn.ran("INSERT INTO gateway_events")[0][:2] == ("lease.taken_over", "g1")


def test_journal_records_are_keyed_by_host_and_need_the_lease(db):
    conn = db(("RETURNING organization_id", [(ORG, "g1", "allocating")]), ("WITH before", [(0.25,)]))
    _pool_ops.write_step({"login_host": "db", "login_port": 1, "login_user": "u", "login_db": "d", "login_password": None,
                          "connect_timeout": 1, "allocation_id": "a1", "step": "route", "host": "edge-2",
                          "lease_seconds": 60, "lease_holder": "run-1"}, "done")
    assert conn.ran("lease_holder = %s) RETURNING organization_id")[0][2:] == ("run-1", "run-1")
    written = conn.ran("INSERT INTO allocation_steps")[0]
    assert (written["a"], written["s"], written["h"], written["state"]) == ("a1", "route", "edge-2", "done")
    done = conn.ran("INSERT INTO gateway_events")[0]
    assert done[:6] == ("step.done", "g1", ORG, "a1", "route", "edge-2") and done[8] == 0.25
    assert done[9].obj == {"operation": "allocate"}
    db(("RETURNING organization_id", []))
    with pytest.raises(LeaseHeldError, match="not live under this run's lease"):
        _pool_ops.write_step({"login_host": "db", "login_port": 1, "login_user": "u", "login_db": "d", "login_password": None,
                              "connect_timeout": 1, "allocation_id": "a1", "step": "dns", "lease_seconds": 60,
                              "lease_holder": "run-2"}, "started")


def test_pool_info_reads_any_number_of_allocations_in_two_queries(db):
    rows = [allocation_row("active", holder=None)] * 50
    conn = db(("func_gateway_stats", [(50, 0, 0, 50, 0, 0, 0, 0, 50)]), ("FROM organizations_gateways og", rows),
              ("FROM allocation_steps", []))
    result = _pool_ops.pool_info(Call(dict(PARAMS, gateways=False, allocations=True, organization=None, stale_seconds=300),
                                      True, False, None))
    assert len(result["allocations"]) == 50
    assert len(conn.ran("FROM organizations_gateways og")) == 2 and len(conn.ran("FROM allocation_steps")) == 2


GATEWAY = dict(PARAMS, name="gw-1", api_url="http://127.0.0.1:21001", nginx_upstream="127.0.0.1:21001", metadata=None,
               status=None, status_reason=None, health_path="/collab/ping", health_timeout=1.0, state="present", from_status=None)


@pytest.mark.parametrize("field, value, message", [
    ("api_url", "file:///etc/passwd", "is not an http"),
    ("api_url", "http://127.0.0.1:0", "is not an http"),
    ("api_url", "http://127.0.0.1:99999", "is not an http"),
    # Once accepted, though the documentation refused them.
    ("api_url", "http://a b:80", "is not an http"),
    ("api_url", "http://evil.com;", "is not an http"),
    ("api_url", "http://evil.com", "is not an http"),
    ("api_url", "http://127.0.0.1:80/?x=1", "is not an http"),
    ("nginx_upstream", "gateway.example:80", "is not <ip>:<port>"),
    ("nginx_upstream", "127.0.0.1:99999", "is not <ip>:<port>"),
])
def test_bad_gateway_addresses_are_refused_before_any_write(db, field, value, message):
    conn = db()
    with pytest.raises(InvalidInputError, match=message):
        _pool_ops.ensure_gateway(Call(dict(GATEWAY, **{field: value}), False, False, None))
    assert conn.ran("proc_gateway_new") == [] and conn.statements[-1] == ("ROLLBACK", ())


@pytest.mark.parametrize("url", ["http://127.0.0.1:21001", "https://gw-1.example.com:443/", "http://[::1]:8080/api"])
def test_good_api_urls_are_taken(url):
    assert _pool_ops._api_url(url) == url.rstrip("/")


RUNNABLE = {"data_dir": "/srv/gw-1/data", "tmp_dir": "/srv/gw-1/tmp", "service": {"systemd_unit": "demiurge-gw-1.service"}}


@pytest.mark.parametrize("other, shared", [(("gw-2", "/srv/gw-1/data", "/srv/gw-2/tmp"), "/srv/gw-1/data"),
                                           (("gw-2", "/srv", "/srv/gw-2/tmp"), "/srv")])
def test_a_gateway_may_not_share_a_directory_with_another_on_its_host(db, monkeypatch, other, shared):
    """A recycle wipes a gateway's directories: shared, it would wipe or hand over another organization's data."""
    monkeypatch.setattr(_pool_ops, "health", lambda url, path, timeout: True)
    conn = db(("metadata->>'data_dir'", [other]))
    with pytest.raises(InvalidInputError, match="is inside gateway gw-2's %s|holds, or is inside gateway gw-2's %s" % (shared, shared)):
        _pool_ops.ensure_gateway(Call(dict(GATEWAY, status="ready", metadata=RUNNABLE, scrubbed=False), False, False, None))
    assert conn.ran("proc_gateway_new") == []


def test_two_gateways_may_not_share_an_address(db):
    conn = db(("api_url = %s OR nginx_upstream = %s", [("gw-2",)]))
    with pytest.raises(InvalidInputError, match="gateway gw-2 already uses one of them"):
        _pool_ops.ensure_gateway(Call(dict(GATEWAY, status="ready", metadata=RUNNABLE, scrubbed=False), False, False, None))
    assert conn.ran("proc_gateway_new") == []


def test_a_gateway_is_put_in_service_only_when_healthy(db, monkeypatch):
    monkeypatch.setattr(_pool_ops, "health", lambda url, path, timeout: False)
    conn = db()
    with pytest.raises(InvalidInputError, match="does not answer GET http://127.0.0.1:21001/collab/ping with 200"):
        _pool_ops.ensure_gateway(Call(dict(GATEWAY, status="ready", metadata=RUNNABLE), False, False, None))
    assert conn.ran("proc_gateway_new") == [] and conn.ran("proc_gateways_set_ready") == []


UNIT = {"systemd_unit": "gw.service"}


@pytest.mark.parametrize("metadata, lacks", [
    (None, "data_dir"),  # pool_gateway's example once showed this; every allocation claiming it then broke
    ({"data_dir": "/srv/gw-1/data", "tmp_dir": "/srv/gw-1/tmp"}, "service"),
    ({"data_dir": "/srv/gw-1/data", "service": UNIT}, "tmp_dir"),  # its session would outlive every recycle
    ({"data_dir": "relative/data", "tmp_dir": "/t", "service": UNIT}, "data_dir"),
    ({"data_dir": "/", "tmp_dir": "/t", "service": UNIT}, "data_dir"),
    ({"data_dir": "/srv/gw-4/data/../../gw-3/data", "tmp_dir": "/t", "service": UNIT}, "data_dir"),
    ({"data_dir": "/srv/data\n", "tmp_dir": "/t", "service": UNIT}, "data_dir"),
    ({"data_dir": "/d", "tmp_dir": "", "service": UNIT}, "tmp_dir"),
    ({"data_dir": "/d", "tmp_dir": "/t", "service": {"systemd_unit": " "}}, "service"),
    ({"data_dir": "/d", "tmp_dir": "/t", "service": {"daemon": "gw"}}, "service"),
    ({"data_dir": "/d", "tmp_dir": "/t", "service": {"daemon": {}}}, "service.daemon"),
    ({"data_dir": "/d", "tmp_dir": "/d/tmp", "service": UNIT}, "data_dir and tmp_dir that are distinct"),
])
def test_a_gateway_the_life_cycle_cannot_run_is_not_put_in_service(db, monkeypatch, metadata, lacks):
    monkeypatch.setattr(_pool_ops, "health", lambda url, path, timeout: True)
    conn = db()
    with pytest.raises(InvalidInputError, match="Gateway gw-1 cannot be put in service: its metadata lacks %s" % lacks):
        _pool_ops.ensure_gateway(Call(dict(GATEWAY, status="ready", metadata=metadata), False, False, None))
    assert conn.ran("proc_gateway_new") == [] and conn.statements[-1] == ("ROLLBACK", ())


def test_a_gateway_registered_without_status_needs_no_metadata_yet(db):
    conn = db()
    _pool_ops.ensure_gateway(Call(dict(GATEWAY, scrubbed=False), False, False, None))
    assert len(conn.ran("proc_gateway_new")) == 1 and conn.statements[-1] == ("COMMIT", ())


def test_a_list_claims_each_organization_once_and_fails_only_the_ones_that_fail(monkeypatch):
    from ansible_collections.demiurge.gateway.plugins.module_utils._errors import DatabaseError, GatewayError, PoolExhaustedError
    exhausted, lost = "7c1d2e3f-4a5b-4c6d-8e7f-8899aabbccdd", "1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b"
    claimed = []

    def claim(call_, organization, holder, conn):
        assert conn is shared
        claimed.append((organization, holder))
        if organization == exhausted:
            raise PoolExhaustedError("Pool exhausted on db: no ready gateway is available")
        if organization == lost:
            raise DatabaseError("The connection was lost while committing; whether the change was written is unknown")
        return {"changed": True, "created": True, "allocation": {"allocation_id": "a-" + organization[:4]}}

    shared = Connection([])
    opened = []
    monkeypatch.setattr(_pool_ops, "connect", lambda params: opened.append(1) or shared)
    monkeypatch.setitem(_pool_ops._BATCH_STATES, "present", claim)
    with pytest.raises(GatewayError, match="3 of 5 organizations were not claimed") as failed:
        _pool_ops.ensure_allocation(call(organization=None, lease_holder="run-1",
                                         organizations=[ORG, exhausted, "not-a-uuid", ORG.upper(), lost]))
    details = failed.value.details
    assert claimed == [(ORG, "run-1"), (exhausted, "run-1"), (lost, "run-1")], "once each, under one holder"
    assert details["allocations"] == {ORG: {"allocation_id": "a-0b5e"}} and details["created_organizations"] == [ORG]
    assert sorted(details["failed_organizations"]) == sorted([exhausted, "not-a-uuid", lost])
    assert details["unknown_organizations"] == [lost] and details["outcome"] == "unknown", "a lost commit may have claimed"
    assert opened == [1], "one connection for the list"


def test_a_list_takes_only_claims_and_activations():
    with pytest.raises(InvalidInputError, match="organizations takes state present or active, not absent"):
        _pool_ops.ensure_allocation(call(organization=None, organizations=[ORG], state="absent"))


ALLOCATION = {"allocation_id": "a-1", "gateway_id": "g-1", "gateway_name": "gw-1"}


@pytest.mark.parametrize("in_a_row, expected", [
    (2, ("ready", None)),
    (3, ("quarantined", "it failed 3 allocations in a row; the last at its handshake step: refused. Fix it, then return "
                        "it with pool_gateway status=ready")),
])
def test_a_gateway_that_keeps_failing_its_handshake_is_set_aside(in_a_row, expected):
    conn = Connection([("FROM allocation_steps", [("handshake", "refused")]),
                       ("UPDATE gateways SET faults_in_a_row", [(in_a_row, 3)]), ("count(DISTINCT gateway_id)", [(0,)])])
    assert _pool_ops._count_gateway_fault(conn, ALLOCATION, "run-1", "ready", None) == expected
    assert conn.ran("INSERT INTO gateway_events")[0][:2] == ("gateway.fault", "g-1")


def test_a_fault_other_gateways_share_sets_none_aside():
    """The platform API down fails every gateway's handshake: quarantining each would empty the pool."""
    conn = Connection([("FROM allocation_steps", [("handshake", "never exchanged its token")]),
                       ("UPDATE gateways SET faults_in_a_row", [(3, 3)]), ("count(DISTINCT gateway_id)", [(1,)])])
    assert _pool_ops._count_gateway_fault(conn, ALLOCATION, "run-1", "ready", None) == ("ready", None)


def test_a_failure_that_is_not_the_gateways_counts_nothing():
    conn = Connection([("FROM allocation_steps", [])])
    assert _pool_ops._count_gateway_fault(conn, ALLOCATION, "run-1", "ready", None) == ("ready", None)
    assert conn.ran("faults_in_a_row") == [] and conn.ran("gateway_events") == []
