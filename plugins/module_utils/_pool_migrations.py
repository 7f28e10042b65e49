# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

Versioned migrations of the pool schema. Append new versions; never edit an
applied one (its checksum is recorded and checked on every run).

Table and routine names are the platform's, so its other services keep
working on the same database.
"""

from __future__ import annotations

import hashlib
from collections import namedtuple

Migration = namedtuple("Migration", "version name sql")

# SQLSTATE raised when no ready gateway exists; callers match on it, not on text.
POOL_EXHAUSTED_SQLSTATE = "DGA01"

_V1_POOL = r"""
CREATE TABLE gateways (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name            text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    api_url         text NOT NULL,
    nginx_upstream  text NOT NULL CHECK (nginx_upstream ~ '^[A-Za-z0-9.:\[\]-]+:[0-9]{1,5}$'),
    status          text NOT NULL DEFAULT 'starting'
                    CHECK (status IN ('starting', 'ready', 'allocated', 'resetting', 'quarantined', 'retired')),
    status_reason   text,
    metadata        jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    ready_at        timestamptz
);
-- Claims scan only ready gateways, in this order.
CREATE INDEX gateways_ready_order ON gateways (created_at, id) WHERE status = 'ready';

-- One row per allocation; its id is the allocation id used by DNS ownership and the step journal.
CREATE TABLE organizations_gateways (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id  uuid NOT NULL,
    gateway_id       uuid NOT NULL REFERENCES gateways (id),
    status           text NOT NULL DEFAULT 'allocating'
                     CHECK (status IN ('allocating', 'active', 'releasing', 'released', 'failed')),
    started_at       timestamptz NOT NULL DEFAULT now(),
    activated_at     timestamptz,
    stopped_at       timestamptz,
    stop_reason      text,
    lease_expires_at timestamptz,
    CHECK ((stopped_at IS NULL) = (status IN ('allocating', 'active', 'releasing')))
);
-- At most one live allocation per organization and per gateway, whatever the callers do.
CREATE UNIQUE INDEX organizations_gateways_one_per_org
    ON organizations_gateways (organization_id) WHERE stopped_at IS NULL;
CREATE UNIQUE INDEX organizations_gateways_one_per_gateway
    ON organizations_gateways (gateway_id) WHERE stopped_at IS NULL;
CREATE INDEX organizations_gateways_lease ON organizations_gateways (lease_expires_at) WHERE stopped_at IS NULL;

-- Journal of allocation steps, so a killed run can be rolled back or forward later.
CREATE TABLE allocation_steps (
    allocation_id uuid NOT NULL REFERENCES organizations_gateways (id) ON DELETE CASCADE,
    step          text NOT NULL,
    state         text NOT NULL CHECK (state IN ('started', 'done', 'undone', 'failed')),
    detail        jsonb NOT NULL DEFAULT '{}',
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (allocation_id, step)
);

CREATE TABLE gateway_events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    kind            text NOT NULL,
    gateway_id      uuid,
    organization_id uuid,
    allocation_id   uuid,
    detail          jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX gateway_events_at ON gateway_events (at);

CREATE PROCEDURE proc_gateway_new(
    p_name text, p_api_url text, p_nginx_upstream text, p_metadata jsonb DEFAULT '{}',
    INOUT o_gateway_id uuid DEFAULT NULL)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO gateways (name, api_url, nginx_upstream, metadata)
    VALUES (p_name, p_api_url, p_nginx_upstream, coalesce(p_metadata, '{}'))
    RETURNING id INTO o_gateway_id;
    INSERT INTO gateway_events (kind, gateway_id, detail)
    VALUES ('gateway.registered', o_gateway_id, jsonb_build_object('name', p_name));
END $$;

CREATE PROCEDURE proc_gateways_set_ready(p_gateway_id uuid)
LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
BEGIN
    SELECT status INTO v_status FROM gateways WHERE id = p_gateway_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'gateway % does not exist', p_gateway_id USING ERRCODE = 'no_data_found';
    END IF;
    IF EXISTS (SELECT 1 FROM organizations_gateways WHERE gateway_id = p_gateway_id AND stopped_at IS NULL) THEN
        RAISE EXCEPTION 'gateway % is allocated and cannot return to the pool', p_gateway_id
            USING ERRCODE = 'object_in_use', HINT = 'Release its organization first';
    END IF;
    IF v_status = 'retired' THEN
        RAISE EXCEPTION 'gateway % is retired', p_gateway_id USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF v_status <> 'ready' THEN
        UPDATE gateways SET status = 'ready', status_reason = NULL, ready_at = now(), updated_at = now()
        WHERE id = p_gateway_id;
        INSERT INTO gateway_events (kind, gateway_id, detail)
        VALUES ('gateway.ready', p_gateway_id, jsonb_build_object('from', v_status));
    END IF;
END $$;

-- Claim a ready gateway for an organization. No transaction control inside: the
-- caller's transaction decides, so a rolled-back caller leaves no trace.
CREATE PROCEDURE proc_organizations_start_gateway(
    p_organization_id uuid, p_lease interval DEFAULT interval '10 minutes',
    INOUT o_allocation_id uuid DEFAULT NULL, INOUT o_gateway_id uuid DEFAULT NULL,
    INOUT o_created boolean DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    v_gateway uuid;
BEGIN
    IF p_organization_id IS NULL THEN
        RAISE EXCEPTION 'organization id is null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- Serialise claims per organization, so concurrent calls for one org cannot take two gateways
    -- and a caller never sees another claim of its own org half done.
    PERFORM pg_advisory_xact_lock(hashtextextended('demiurge.gateway/org/' || p_organization_id::text, 0));

    SELECT id, gateway_id INTO o_allocation_id, o_gateway_id
    FROM organizations_gateways WHERE organization_id = p_organization_id AND stopped_at IS NULL;
    IF FOUND THEN
        o_created := false;
        RETURN;
    END IF;

    -- A locking SELECT keeps the locks of rows it locked and then found already taken
    -- (status changed by a committed claim). Each pass therefore runs in a subtransaction
    -- that is rolled back when it finds nothing, so no one waits while holding such locks
    -- from an earlier pass; inside one pass locks follow (created_at, id): no deadlock.
    LOOP
        -- Fast path: the first ready gateway nobody else is claiming right now.
        BEGIN
            SELECT id INTO v_gateway FROM gateways WHERE status = 'ready'
            ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED;
            IF NOT FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'DGA02';
            END IF;
        EXCEPTION WHEN SQLSTATE 'DGA02' THEN
            v_gateway := NULL;
        END;
        EXIT WHEN v_gateway IS NOT NULL;
        -- Every ready gateway is locked by an in-flight claim that may still roll back:
        -- wait for those claims instead of answering "exhausted" too early.
        BEGIN
            SELECT id INTO v_gateway FROM gateways WHERE status = 'ready'
            ORDER BY created_at, id LIMIT 1 FOR UPDATE;
            IF NOT FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'DGA02';
            END IF;
        EXCEPTION WHEN SQLSTATE 'DGA02' THEN
            v_gateway := NULL;
        END;
        EXIT WHEN v_gateway IS NOT NULL;
        -- Fresh snapshot: a gateway may have become ready meanwhile.
        IF NOT EXISTS (SELECT 1 FROM gateways WHERE status = 'ready') THEN
            RAISE EXCEPTION 'no gateway available' USING ERRCODE = 'DGA01',
                HINT = 'Every gateway in the pool is allocated or not ready; add gateways or release some';
        END IF;
    END LOOP;

    UPDATE gateways SET status = 'allocated', updated_at = now() WHERE id = v_gateway;
    INSERT INTO organizations_gateways (organization_id, gateway_id, lease_expires_at)
    VALUES (p_organization_id, v_gateway, now() + p_lease)
    RETURNING id INTO o_allocation_id;
    o_gateway_id := v_gateway;
    o_created := true;
    INSERT INTO gateway_events (kind, gateway_id, organization_id, allocation_id)
    VALUES ('allocation.claimed', v_gateway, p_organization_id, o_allocation_id);
END $$;

-- End the organization's live allocation; the gateway goes to 'resetting' until it is
-- reset and healthy (proc_gateways_set_ready). A call without a live allocation is a no-op.
CREATE PROCEDURE proc_organizations_gateways_stop(
    p_organization_id uuid, p_reason text DEFAULT 'released',
    INOUT o_allocation_id uuid DEFAULT NULL, INOUT o_gateway_id uuid DEFAULT NULL)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('demiurge.gateway/org/' || p_organization_id::text, 0));
    UPDATE organizations_gateways
    SET stopped_at = now(), stop_reason = p_reason,
        status = CASE WHEN p_reason = 'released' THEN 'released' ELSE 'failed' END
    WHERE organization_id = p_organization_id AND stopped_at IS NULL
    RETURNING id, gateway_id INTO o_allocation_id, o_gateway_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE gateways SET status = 'resetting', updated_at = now() WHERE id = o_gateway_id;
    INSERT INTO gateway_events (kind, gateway_id, organization_id, allocation_id, detail)
    VALUES ('allocation.stopped', o_gateway_id, p_organization_id, o_allocation_id,
            jsonb_build_object('reason', p_reason));
END $$;

CREATE FUNCTION func_organizations_get_active_gateway(p_organization_id uuid)
RETURNS TABLE (allocation_id uuid, allocation_status text, gateway_id uuid, gateway_name text,
               api_url text, nginx_upstream text, started_at timestamptz, lease_expires_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT og.id, og.status, g.id, g.name, g.api_url, g.nginx_upstream, og.started_at, og.lease_expires_at
    FROM organizations_gateways og JOIN gateways g ON g.id = og.gateway_id
    WHERE og.organization_id = p_organization_id AND og.stopped_at IS NULL
$$;

CREATE FUNCTION func_gateway_stats()
RETURNS TABLE (total bigint, starting bigint, ready bigint, allocated bigint, resetting bigint,
               quarantined bigint, retired bigint, live_allocations bigint)
LANGUAGE sql STABLE AS $$
    SELECT count(*),
           count(*) FILTER (WHERE status = 'starting'),
           count(*) FILTER (WHERE status = 'ready'),
           count(*) FILTER (WHERE status = 'allocated'),
           count(*) FILTER (WHERE status = 'resetting'),
           count(*) FILTER (WHERE status = 'quarantined'),
           count(*) FILTER (WHERE status = 'retired'),
           (SELECT count(*) FROM organizations_gateways WHERE stopped_at IS NULL)
    FROM gateways
$$;
"""

_V2_LEASES_AND_HANDSHAKE = r"""
-- The run that holds an allocation's lease is the only one that runs its steps or undoes them.
ALTER TABLE organizations_gateways
    ADD COLUMN lease_holder text,
    -- The gateway's one-time handshake token: it exchanges it for its organization's configuration
    -- at the platform's API (func_organizations_gateways_get). Single use; valid while the lease runs.
    ADD COLUMN tmp_handshake_token uuid UNIQUE,
    ADD COLUMN tmp_handshake_token_used_at timestamptz;

-- One journal record per step and host (every edge has its own route record); '' for steps
-- that run on the controller.
ALTER TABLE allocation_steps ADD COLUMN host text NOT NULL DEFAULT '';
ALTER TABLE allocation_steps DROP CONSTRAINT allocation_steps_pkey;
ALTER TABLE allocation_steps ADD PRIMARY KEY (allocation_id, step, host);
-- 'unknown': the request may have reached its service (a timeout); undone like 'done'.
ALTER TABLE allocation_steps DROP CONSTRAINT allocation_steps_state_check;
ALTER TABLE allocation_steps ADD CONSTRAINT allocation_steps_state_check
    CHECK (state IN ('started', 'done', 'undone', 'failed', 'unknown'));

-- Gateways left 'resetting' by a run that died are found by reconcile through this.
CREATE INDEX gateways_resetting ON gateways (updated_at) WHERE status = 'resetting';

-- The platform's configuration endpoint (POST /gateway/config) calls this with the token the
-- gateway presents. It answers once per token, and only while the allocation is in progress.
CREATE FUNCTION func_organizations_gateways_get(p_token uuid)
RETURNS TABLE (organization_id uuid, allocation_id uuid, gateway_id uuid, gateway_name text)
LANGUAGE sql VOLATILE AS $$
    UPDATE organizations_gateways og SET tmp_handshake_token_used_at = now()
    FROM gateways g
    WHERE og.tmp_handshake_token = p_token AND og.tmp_handshake_token_used_at IS NULL
      AND og.stopped_at IS NULL AND og.status = 'allocating' AND og.lease_expires_at > now()
      AND g.id = og.gateway_id
    RETURNING og.organization_id, og.id, g.id, g.name
$$;
"""

_V3_EVENTS_AND_METRICS = r"""
-- Events: one row per change of the life cycle, written in the transaction of the change.
ALTER TABLE gateway_events
    ADD COLUMN step text,
    ADD COLUMN host text,
    ADD COLUMN cause text,
    ADD COLUMN run text,
    ADD COLUMN duration_seconds double precision,
    -- The writing transaction: sinks read events in (txid, id) order once every older transaction
    -- has ended, so an event committed late is never skipped.
    ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX gateway_events_txid ON gateway_events (txid, id);
CREATE INDEX gateway_events_organization ON gateway_events (organization_id, id) WHERE organization_id IS NOT NULL;
CREATE INDEX gateway_events_gateway ON gateway_events (gateway_id, id) WHERE gateway_id IS NOT NULL;
CREATE INDEX gateway_events_allocation ON gateway_events (allocation_id, id) WHERE allocation_id IS NOT NULL;
CREATE INDEX gateway_events_kind ON gateway_events (kind, id);

-- When the release in progress began (its duration is measured from here).
ALTER TABLE organizations_gateways ADD COLUMN releasing_at timestamptz;

-- Settings read by the metrics and, later, the autoscaler.
CREATE TABLE pool_settings (
    name       text PRIMARY KEY CHECK (name IN ('ready_floor')),
    value      bigint NOT NULL CHECK (value >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Counters, histograms, the snapshot inventory and the jobs' outcomes, derived from the events by
-- func_events_rollup (the metrics' scrape runs it). Writing an event stays a plain insert, and
-- these tables keep their totals whatever is pruned from gateway_events.
CREATE TABLE event_counters (
    kind  text NOT NULL,
    step  text NOT NULL DEFAULT '',
    value bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, step)
);
CREATE TABLE event_durations (
    metric    text NOT NULL,             -- 'step' or 'operation'
    operation text NOT NULL,             -- 'allocate' or 'release'
    label     text NOT NULL,             -- the step, or the operation's result
    le        double precision NOT NULL, -- the bucket's upper bound (not cumulative here)
    count     bigint NOT NULL DEFAULT 0,
    sum       double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (metric, operation, label, le)
);
-- Snapshots in central storage, as the life cycle stored and pruned them.
CREATE TABLE snapshot_inventory (
    organization_id uuid NOT NULL,
    snapshot_id     text NOT NULL,
    size_bytes      bigint NOT NULL DEFAULT 0,
    stored_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, snapshot_id)
);
-- The last outcome of each periodic job.
CREATE TABLE job_runs (
    job             text PRIMARY KEY,
    last_success_at timestamptz,
    last_failure_at timestamptz,
    last_cause      text
);
-- How far each reader of the events has read, in (txid, id) order: the event sinks (the log file,
-- the webhook) by name, and the rollup as 'rollup'.
CREATE TABLE event_sinks (
    name       text PRIMARY KEY,
    last_txid  xid8 NOT NULL DEFAULT '0',
    last_id    bigint NOT NULL DEFAULT 0,
    last_at    timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO event_sinks (name) VALUES ('rollup');

CREATE FUNCTION func_duration_bucket(p_seconds double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
    SELECT min(b) FROM unnest(ARRAY[0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 'Infinity']::float8[]) b
    WHERE b >= p_seconds
$$;

-- Fold the events not yet rolled up into the derived tables, set by set; how many it folded.
-- Only events of transactions older than every running one are read, in (txid, id) order, so an
-- event that commits late is never skipped. One rollup at a time; the next finds the work done.
-- SECURITY DEFINER: a monitoring role that may only read the pool can still run it.
CREATE FUNCTION func_events_rollup() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_from record;
    v_to record;
    v_count bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('demiurge.gateway/events-rollup', 0));
    SELECT last_txid AS txid, last_id AS id INTO v_from FROM event_sinks WHERE name = 'rollup' FOR UPDATE;
    -- The batch ends at its last visible event; every event up to there is settled (committed or
    -- rolled back), so the batch's bounds stay right whatever commits meanwhile.
    SELECT txid, id, at, count(*) OVER () AS n INTO v_to FROM (
        SELECT txid, id, at FROM gateway_events
        WHERE (txid, id) > (v_from.txid, v_from.id) AND txid < pg_snapshot_xmin(pg_current_snapshot())
        ORDER BY txid, id LIMIT 100000) AS batch
    ORDER BY txid DESC, id DESC LIMIT 1;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    v_count := v_to.n;

    INSERT INTO event_counters AS c (kind, step, value)
    SELECT kind, coalesce(step, ''), count(*) FROM gateway_events
    WHERE (txid, id) > (v_from.txid, v_from.id) AND (txid, id) <= (v_to.txid, v_to.id)
    GROUP BY 1, 2
    ON CONFLICT (kind, step) DO UPDATE SET value = c.value + EXCLUDED.value;

    INSERT INTO event_durations AS d (metric, operation, label, le, count, sum)
    SELECT CASE WHEN kind LIKE 'step.%' THEN 'step' ELSE 'operation' END, detail->>'operation',
           CASE WHEN kind LIKE 'step.%' THEN step ELSE split_part(kind, '.', 2) END,
           func_duration_bucket(duration_seconds), count(*), sum(duration_seconds)
    FROM gateway_events
    WHERE (txid, id) > (v_from.txid, v_from.id) AND (txid, id) <= (v_to.txid, v_to.id)
      AND duration_seconds IS NOT NULL AND detail ? 'operation'
    GROUP BY 1, 2, 3, 4
    ON CONFLICT (metric, operation, label, le) DO UPDATE SET count = d.count + EXCLUDED.count, sum = d.sum + EXCLUDED.sum;

    INSERT INTO snapshot_inventory (organization_id, snapshot_id, size_bytes, stored_at)
    SELECT organization_id, detail->>'snapshot', coalesce((detail->>'size_bytes')::bigint, 0), at FROM gateway_events
    WHERE (txid, id) > (v_from.txid, v_from.id) AND (txid, id) <= (v_to.txid, v_to.id)
      AND kind = 'snapshot.stored' AND detail ? 'snapshot'
    ON CONFLICT DO NOTHING;
    DELETE FROM snapshot_inventory s USING gateway_events e
    WHERE (e.txid, e.id) > (v_from.txid, v_from.id) AND (e.txid, e.id) <= (v_to.txid, v_to.id)
      AND e.kind = 'snapshot.stored' AND jsonb_typeof(e.detail->'pruned') = 'array'
      AND s.organization_id = e.organization_id AND e.detail->'pruned' ? s.snapshot_id;

    INSERT INTO job_runs AS j (job, last_success_at, last_failure_at, last_cause)
    SELECT step, max(at) FILTER (WHERE kind = 'job.succeeded'), max(at) FILTER (WHERE kind = 'job.failed'),
           (array_agg(cause ORDER BY at DESC) FILTER (WHERE kind = 'job.failed'))[1]
    FROM gateway_events
    WHERE (txid, id) > (v_from.txid, v_from.id) AND (txid, id) <= (v_to.txid, v_to.id)
      AND kind IN ('job.succeeded', 'job.failed')
    GROUP BY step
    ON CONFLICT (job) DO UPDATE SET
        last_success_at = greatest(j.last_success_at, EXCLUDED.last_success_at),
        last_failure_at = greatest(j.last_failure_at, EXCLUDED.last_failure_at),
        last_cause = coalesce(EXCLUDED.last_cause, j.last_cause);

    UPDATE event_sinks SET last_txid = v_to.txid, last_id = v_to.id, last_at = v_to.at, updated_at = now()
    WHERE name = 'rollup';
    RETURN v_count;
END $$;

-- What the metrics read: each rolls the events up first, in its own statement, so a scrape shows
-- every event settled before it.
CREATE FUNCTION func_event_counters() RETURNS SETOF event_counters
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM func_events_rollup();
    RETURN QUERY SELECT * FROM event_counters;
END $$;
CREATE FUNCTION func_event_durations() RETURNS SETOF event_durations
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM func_events_rollup();
    RETURN QUERY SELECT * FROM event_durations;
END $$;
CREATE FUNCTION func_snapshot_inventory() RETURNS SETOF snapshot_inventory
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM func_events_rollup();
    RETURN QUERY SELECT * FROM snapshot_inventory;
END $$;
CREATE FUNCTION func_job_runs() RETURNS SETOF job_runs
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM func_events_rollup();
    RETURN QUERY SELECT * FROM job_runs;
END $$;

-- Live consumers; delivered at commit, so a rolled-back change announces nothing. Nothing else
-- happens when an event is written: the rollup does the counting later.
CREATE FUNCTION trg_gateway_event_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('demiurge_gateway_events', json_build_object(
        'id', NEW.id, 'at', NEW.at, 'kind', NEW.kind, 'organization', NEW.organization_id,
        'gateway', NEW.gateway_id, 'allocation', NEW.allocation_id, 'step', NEW.step, 'host', NEW.host,
        'cause', left(NEW.cause, 500))::text);
    RETURN NULL;
END $$;
CREATE TRIGGER gateway_events_notify AFTER INSERT ON gateway_events
    FOR EACH ROW EXECUTE FUNCTION trg_gateway_event_notify();

-- The end of an allocation is recorded as what it was: released, or rolled back at the step that
-- failed (the journal's first record that did not finish), with its duration.
CREATE OR REPLACE PROCEDURE proc_organizations_gateways_stop(
    p_organization_id uuid, p_reason text DEFAULT 'released',
    INOUT o_allocation_id uuid DEFAULT NULL, INOUT o_gateway_id uuid DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    v_started timestamptz;
    v_releasing timestamptz;
    v_step text;
    v_cause text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('demiurge.gateway/org/' || p_organization_id::text, 0));
    SELECT id, gateway_id, started_at, releasing_at
    INTO o_allocation_id, o_gateway_id, v_started, v_releasing
    FROM organizations_gateways WHERE organization_id = p_organization_id AND stopped_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE organizations_gateways
    SET stopped_at = now(), stop_reason = p_reason,
        status = CASE WHEN p_reason = 'released' THEN 'released' ELSE 'failed' END
    WHERE id = o_allocation_id;
    UPDATE gateways SET status = 'resetting', updated_at = now() WHERE id = o_gateway_id;
    SELECT step, detail->>'error' INTO v_step, v_cause FROM allocation_steps
    WHERE allocation_id = o_allocation_id AND state IN ('started', 'failed', 'unknown')
    ORDER BY updated_at LIMIT 1;
    IF p_reason = 'released' THEN
        INSERT INTO gateway_events (kind, gateway_id, organization_id, allocation_id, duration_seconds, detail)
        VALUES ('allocation.released', o_gateway_id, p_organization_id, o_allocation_id,
                extract(epoch FROM now() - coalesce(v_releasing, now())),
                jsonb_build_object('operation', 'release'));
    ELSE
        -- The teardown undid every step that may have reached its service before this call.
        WITH undone AS (
            UPDATE allocation_steps SET state = 'undone', updated_at = now()
            WHERE allocation_id = o_allocation_id AND state IN ('started', 'done', 'unknown')
            RETURNING step, host)
        INSERT INTO gateway_events (kind, gateway_id, organization_id, allocation_id, step, host)
        SELECT 'step.undone', o_gateway_id, p_organization_id, o_allocation_id, step, host FROM undone;
        INSERT INTO gateway_events (kind, gateway_id, organization_id, allocation_id, step, cause, duration_seconds, detail)
        VALUES ('allocation.rolled_back', o_gateway_id, p_organization_id, o_allocation_id, v_step, v_cause,
                extract(epoch FROM now() - v_started), jsonb_build_object('operation', 'allocate'));
    END IF;
END $$;
"""

_V4_AUTOSCALING = r"""
-- 'retiring': taken out of the claimable set by the autoscaler, being stopped.
ALTER TABLE gateways DROP CONSTRAINT gateways_status_check;
ALTER TABLE gateways ADD CONSTRAINT gateways_status_check
    CHECK (status IN ('starting', 'ready', 'allocated', 'resetting', 'quarantined', 'retiring', 'retired'));
-- A retired gateway's row stays for the allocations that refer to it; its name (its slot on its
-- host) may be used again.
ALTER TABLE gateways DROP CONSTRAINT gateways_name_key;
CREATE UNIQUE INDEX gateways_name_in_use ON gateways (name) WHERE status <> 'retired';
-- The autoscaler run that registered the gateway (NULL when an operator did).
ALTER TABLE gateways ADD COLUMN created_by text;

ALTER TABLE pool_settings DROP CONSTRAINT pool_settings_name_check;
ALTER TABLE pool_settings ADD CONSTRAINT pool_settings_name_check CHECK (name IN (
    'ready_floor', 'scale_step', 'max_total', 'host_capacity', 'scale_up_cooldown_seconds',
    'scale_down_cooldown_seconds', 'idle_seconds', 'breaker_failures', 'breaker_open_seconds'));
-- The platform's defaults: when fewer than 2 are ready, create 3 more.
INSERT INTO pool_settings (name, value) VALUES
    ('ready_floor', 2), ('scale_step', 3), ('max_total', 20), ('host_capacity', 10),
    ('scale_up_cooldown_seconds', 30), ('scale_down_cooldown_seconds', 600), ('idle_seconds', 1800),
    ('breaker_failures', 3), ('breaker_open_seconds', 300)
ON CONFLICT (name) DO NOTHING;

-- The autoscaler's one row: the lease of the run acting now (single flight), its cooldowns and
-- its circuit breaker.
CREATE TABLE autoscaler_state (
    id                   boolean PRIMARY KEY DEFAULT true CHECK (id),
    holder               text,
    lease_expires_at     timestamptz,
    last_scale_up_at     timestamptz,
    last_scale_down_at   timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0,
    breaker_open_until   timestamptz,
    last_decision        jsonb NOT NULL DEFAULT '{}',
    updated_at           timestamptz NOT NULL DEFAULT now()
);
INSERT INTO autoscaler_state DEFAULT VALUES;

-- A gateway being retired is never put back in service.
CREATE OR REPLACE PROCEDURE proc_gateways_set_ready(p_gateway_id uuid)
LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
BEGIN
    SELECT status INTO v_status FROM gateways WHERE id = p_gateway_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'gateway % does not exist', p_gateway_id USING ERRCODE = 'no_data_found';
    END IF;
    IF EXISTS (SELECT 1 FROM organizations_gateways WHERE gateway_id = p_gateway_id AND stopped_at IS NULL) THEN
        RAISE EXCEPTION 'gateway % is allocated and cannot return to the pool', p_gateway_id
            USING ERRCODE = 'object_in_use', HINT = 'Release its organization first';
    END IF;
    IF v_status IN ('retiring', 'retired') THEN
        RAISE EXCEPTION 'gateway % is %', p_gateway_id, v_status USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF v_status <> 'ready' THEN
        UPDATE gateways SET status = 'ready', status_reason = NULL, ready_at = now(), updated_at = now()
        WHERE id = p_gateway_id;
        INSERT INTO gateway_events (kind, gateway_id, detail)
        VALUES ('gateway.ready', p_gateway_id, jsonb_build_object('from', v_status));
    END IF;
END $$;

DROP FUNCTION func_gateway_stats();
CREATE FUNCTION func_gateway_stats()
RETURNS TABLE (total bigint, starting bigint, ready bigint, allocated bigint, resetting bigint,
               quarantined bigint, retiring bigint, retired bigint, live_allocations bigint)
LANGUAGE sql STABLE AS $$
    SELECT count(*),
           count(*) FILTER (WHERE status = 'starting'),
           count(*) FILTER (WHERE status = 'ready'),
           count(*) FILTER (WHERE status = 'allocated'),
           count(*) FILTER (WHERE status = 'resetting'),
           count(*) FILTER (WHERE status = 'quarantined'),
           count(*) FILTER (WHERE status = 'retiring'),
           count(*) FILTER (WHERE status = 'retired'),
           (SELECT count(*) FROM organizations_gateways WHERE stopped_at IS NULL)
    FROM gateways
$$;
"""

_V5_GATEWAY_FAULTS = r"""
-- Allocations that failed, in a row, through the gateway's own fault (its handshake, or no edge
-- reaching it); reset when one of its allocations becomes active. At gateway_fault_limit it is
-- quarantined, so one broken gateway is not claimed again and again while healthy ones wait.
ALTER TABLE gateways ADD COLUMN faults_in_a_row integer NOT NULL DEFAULT 0;

ALTER TABLE pool_settings DROP CONSTRAINT pool_settings_name_check;
ALTER TABLE pool_settings ADD CONSTRAINT pool_settings_name_check CHECK (name IN (
    'ready_floor', 'scale_step', 'max_total', 'host_capacity', 'scale_up_cooldown_seconds',
    'scale_down_cooldown_seconds', 'idle_seconds', 'breaker_failures', 'breaker_open_seconds',
    'gateway_fault_limit'));
INSERT INTO pool_settings (name, value) VALUES ('gateway_fault_limit', 3) ON CONFLICT (name) DO NOTHING;

-- A ready gateway registered without what the life cycle needs to restore into it and to recycle it
-- (its data directory and private /tmp as absolute paths, and a service to stop and start) would
-- break every allocation that claims it, or keep a session through its recycle: set aside, with the
-- reason. pool_gateway checks the same, and more, before it puts a gateway in service.
WITH unrunnable AS (
    UPDATE gateways SET status = 'quarantined', updated_at = now(),
           status_reason = 'registered without plain absolute metadata.data_dir and metadata.tmp_dir, or without a '
                           'metadata.service the life cycle can run; register it again with them (docs/howto-inventory.md)'
    WHERE status = 'ready' AND NOT coalesce((
        jsonb_typeof(metadata->'data_dir') = 'string' AND metadata->>'data_dir' ~ '^/.' AND metadata->>'data_dir' !~ '(^|/)\.\.?(/|$)'
        AND jsonb_typeof(metadata->'tmp_dir') = 'string' AND metadata->>'tmp_dir' ~ '^/.' AND metadata->>'tmp_dir' !~ '(^|/)\.\.?(/|$)'
        AND metadata->>'data_dir' <> metadata->>'tmp_dir'
        AND (jsonb_typeof(metadata->'service'->'daemon'->'argv') = 'array'
             AND jsonb_array_length(metadata->'service'->'daemon'->'argv') > 0
             AND jsonb_typeof(metadata->'service'->'daemon'->'pidfile') = 'string'
             OR coalesce(metadata->'service'->>'systemd_unit', '') ~ '^[A-Za-z0-9:_.@-]+$')), false)
    RETURNING id, status_reason)
INSERT INTO gateway_events (kind, gateway_id, cause, detail)
SELECT 'gateway.quarantined', id, status_reason, '{"from": "ready"}'::jsonb FROM unrunnable;
"""

MIGRATIONS = (
    Migration(1, "pool tables, allocation journal, events and routines", _V1_POOL),
    Migration(2, "lease holders, handshake tokens, a journal record per step and host", _V2_LEASES_AND_HANDSHAKE),
    Migration(3, "events with causes, their sinks, and the counters and gauges behind the metrics", _V3_EVENTS_AND_METRICS),
    Migration(4, "autoscaling: retiring gateways, reusable names, scaler settings and state", _V4_AUTOSCALING),
    Migration(5, "gateway faults in a row and their limit; unrunnable ready gateways set aside", _V5_GATEWAY_FAULTS),
)


def checksum(migration):
    return hashlib.sha256(migration.sql.encode("utf-8")).hexdigest()
