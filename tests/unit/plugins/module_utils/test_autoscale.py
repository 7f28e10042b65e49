"""The autoscaler's decision (plan) as a pure function, and its properties over many pools."""

import datetime
import random

import pytest

from ansible_collections.demiurge.gateway.plugins.module_utils._autoscale import _validate_hosts, plan
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import InvalidInputError

NOW = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.timezone.utc)
SETTINGS = {"ready_floor": 2, "scale_step": 3, "max_total": 20, "host_capacity": 10, "scale_up_cooldown_seconds": 30,
            "scale_down_cooldown_seconds": 600, "idle_seconds": 1800, "breaker_failures": 3, "breaker_open_seconds": 300}
HOSTS = [{"name": "h1", "prefix": "h1-gw-", "listen": "10.0.0.1", "port_base": 16500},
         {"name": "h2", "prefix": "h2-gw-", "listen": "10.0.0.2", "port_base": 16500}]


def gw(name, status="ready", idle=0, host=None):
    return {"name": name, "status": status, "host": host or name.split("-gw-")[0], "created_by": None,
            "ready_at": NOW - datetime.timedelta(seconds=idle) if status == "ready" else None}


def test_below_the_floor_creates_one_step_spread_by_free_room():
    gateways = [gw("h1-gw-001", "allocated"), gw("h1-gw-002", "allocated"), gw("h1-gw-003"), gw("h2-gw-001", "allocated")]
    decision = plan(SETTINGS, gateways, HOSTS, {}, NOW)
    assert decision["action"] == "create"
    # h2 has 9 free, h1 7: h2 first, then alternating by free room.
    assert [(g["name"], g["port"]) for g in decision["create"]] == [("h2-gw-002", 16502), ("h2-gw-003", 16503),
                                                                    ("h1-gw-004", 16504)]
    assert decision["create"][0]["api_url"] == "http://10.0.0.2:16502"
    assert decision["inputs"] == {"ready": 1, "starting": 0, "total": 4, "ready_floor": 2, "max_total": 20, "scale_step": 3}


def test_gateways_still_starting_count_toward_the_floor():
    gateways = [gw("h1-gw-001"), gw("h1-gw-002", "starting"), gw("h1-gw-003", "starting")]
    assert plan(SETTINGS, gateways, HOSTS, {}, NOW)["action"] == "none"


def test_a_deep_shortfall_creates_whole_steps_but_never_past_max_total_or_capacity():
    settings = dict(SETTINGS, ready_floor=7, max_total=8, host_capacity=3)
    gateways = [gw("h1-gw-001", "allocated")]
    decision = plan(settings, gateways, HOSTS, {}, NOW)
    # 7 missing -> 9 wanted; host room 2 + 3 = 5, max_total room 7: 5.
    assert len(decision["create"]) == 5 and "of the 9 wanted" in decision["reason"]
    assert plan(dict(settings, max_total=1), gateways, HOSTS, {}, NOW)["action"] == "none"


def test_free_slots_are_reused_and_hosts_capacity_overrides():
    hosts = [dict(HOSTS[0], capacity=1), dict(HOSTS[1], capacity=3)]
    gateways = [gw("h2-gw-002", "allocated")]
    decision = plan(SETTINGS, gateways, hosts, {}, NOW)
    # h2 has 2 free and h1 1: h2, then the tie goes to the first host, then h2 again; slots reused.
    assert [g["name"] for g in decision["create"]] == ["h2-gw-001", "h1-gw-001", "h2-gw-003"]
    assert plan(dict(SETTINGS, ready_floor=9), gateways, hosts, {}, NOW)["create"][3:] == []


def test_cooldowns_and_the_breaker_hold_the_scaler():
    gateways = [gw("h1-gw-001", "allocated")]
    recent = {"last_scale_up_at": NOW - datetime.timedelta(seconds=10)}
    assert plan(SETTINGS, gateways, HOSTS, recent, NOW)["action"] == "none"
    assert plan(SETTINGS, gateways, HOSTS, {"last_scale_up_at": NOW - datetime.timedelta(seconds=31)}, NOW)["action"] == "create"
    broken = {"breaker_open_until": NOW + datetime.timedelta(seconds=5), "consecutive_failures": 3}
    decision = plan(SETTINGS, gateways, HOSTS, broken, NOW)
    assert decision["action"] == "breaker_open" and decision["create"] == [] and "3 failed" in decision["reason"]


def test_scale_in_retires_only_idle_ready_gateways_beyond_the_floor_oldest_first():
    gateways = [gw("h1-gw-001", idle=4000), gw("h1-gw-002", idle=100), gw("h2-gw-001", idle=5000),
                gw("h2-gw-002", idle=2000), gw("h2-gw-003", "allocated"), gw("other-1", idle=9000, host="elsewhere")]
    decision = plan(SETTINGS, gateways, HOSTS, {}, NOW)
    # 5 ready, floor 2: at most 3, only those idle 1800 s or more, on a host the scaler manages.
    assert decision["action"] == "retire" and decision["retire"] == ["h2-gw-001", "h1-gw-001", "h2-gw-002"]
    held = {"last_scale_up_at": NOW - datetime.timedelta(seconds=100)}
    assert plan(SETTINGS, gateways, HOSTS, held, NOW)["action"] == "none"
    assert plan(dict(SETTINGS, ready_floor=4), gateways, HOSTS, {}, NOW)["retire"] == ["h2-gw-001"]


def test_every_decision_keeps_the_pool_within_its_bounds():
    rng = random.Random(13)
    for case in range(2000):
        settings = dict(SETTINGS, ready_floor=rng.randint(0, 8), scale_step=rng.randint(1, 5),
                        max_total=rng.randint(0, 25), host_capacity=rng.randint(0, 12), idle_seconds=rng.choice([0, 1800]))
        gateways = []
        for host in HOSTS:
            for slot in rng.sample(range(1, 15), rng.randint(0, 8)):
                gateways.append(gw("%s%03d" % (host["prefix"], slot), rng.choice(["ready", "starting", "allocated"]),
                                   idle=rng.randint(0, 4000)))
        decision = plan(settings, gateways, HOSTS, {}, NOW)
        ready = sum(1 for g in gateways if g["status"] == "ready")
        supply = ready + sum(1 for g in gateways if g["status"] == "starting")
        names = {g["name"] for g in gateways}
        assert not (decision["create"] and decision["retire"])
        if decision["create"]:
            assert supply < settings["ready_floor"]
            assert len(gateways) + len(decision["create"]) <= max(settings["max_total"], len(gateways))
            assert not names & {g["name"] for g in decision["create"]}
            assert len(decision["create"]) <= settings["scale_step"] * -(-(settings["ready_floor"] - supply) // settings["scale_step"])
            for host in HOSTS:
                on_host = sum(1 for g in gateways + decision["create"] if g["host"] == host["name"])
                assert on_host <= max(settings["host_capacity"], sum(1 for g in gateways if g["host"] == host["name"]))
        if decision["retire"]:
            assert ready - len(decision["retire"]) >= settings["ready_floor"]
            assert len(decision["retire"]) <= settings["scale_step"]
            assert all(g["status"] == "ready" for g in gateways if g["name"] in decision["retire"])


def test_hosts_need_their_addresses_and_unique_prefixes():
    _validate_hosts(HOSTS)
    with pytest.raises(InvalidInputError, match="prefix"):
        _validate_hosts([HOSTS[0], dict(HOSTS[1], prefix="h1-gw-")])
    with pytest.raises(InvalidInputError, match="listen"):
        _validate_hosts([dict(HOSTS[0], listen="")])
