# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

Apply the pool schema migrations: under a session advisory lock, one
transaction per migration, each recorded with its checksum.
"""

from __future__ import annotations

from ansible_collections.demiurge.gateway.plugins.module_utils._errors import DatabaseError, SchemaError
from ansible_collections.demiurge.gateway.plugins.module_utils._module import ModuleDef
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_db import (
    connect,
    describe,
    pool_db_argument_spec,
    psycopg,
    require_psycopg,
)
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_migrations import MIGRATIONS, checksum

VERSION_TABLE = "gateway_schema_migrations"
# pg_advisory_lock key shared by every migrating process ("dgschema").
MIGRATION_LOCK_KEY = 0x6467736368656D61

_CREATE_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS gateway_schema_migrations ("
    " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())"
)


def ensure_database(params, check_mode):
    """Create login_db from the maintenance database when it is missing; True if (it would be) created."""
    from psycopg import sql

    with connect(params, dbname=params["maintenance_db"], autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (params["login_db"],)).fetchone()
        if exists:
            return False
        if not check_mode:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(params["login_db"])))
            except psycopg.errors.DuplicateDatabase:
                return False  # created concurrently by another run
            except psycopg.Error as exc:
                raise DatabaseError(
                    "Could not create database %s on %s: %s" % (params["login_db"], describe(params), exc),
                    hint="Grant CREATEDB to %s or create the database yourself" % params["login_user"],
                )
        return True


def _applied(conn):
    if conn.execute("SELECT to_regclass(%s)", (VERSION_TABLE,)).fetchone()[0] is None:
        return {}
    rows = conn.execute("SELECT version, name, checksum FROM gateway_schema_migrations").fetchall()
    return {version: (name, digest) for version, name, digest in rows}


def _check_history(applied, target):
    known = {migration.version: migration for migration in MIGRATIONS}
    newer = sorted(version for version in applied if version not in known)
    if newer:
        raise SchemaError(
            "Database %s has schema versions %s that this collection does not know" % (target, newer),
            hint="Upgrade demiurge.gateway to the release that applied them",
        )
    for version, (name, digest) in sorted(applied.items()):
        if digest != checksum(known[version]):
            raise SchemaError(
                "Migration %d (%s) applied to %s differs from the collection's copy" % (version, name, target),
                hint="Someone edited an applied migration; restore it and add a new version instead",
            )


def migrate(params, check_mode):
    """Return (applied_before, pending) and apply pending unless check_mode."""
    target = describe(params)
    with connect(params, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            applied = _applied(conn)
            _check_history(applied, target)
            pending = [migration for migration in MIGRATIONS if migration.version not in applied]
            if pending and not check_mode:
                conn.execute(_CREATE_VERSION_TABLE)
                for migration in pending:
                    _apply_one(conn, migration, target)
            return sorted(applied), pending
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


def _apply_one(conn, migration, target):
    try:
        with conn.transaction():
            conn.execute(migration.sql)
            conn.execute(
                "INSERT INTO gateway_schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, checksum(migration)),
            )
    except psycopg.Error as exc:
        raise SchemaError(
            "Migration %d (%s) failed on %s and was rolled back: %s" % (migration.version, migration.name, target, exc),
            hint="Fix the database state named in the error, then run again",
        )


def ensure_schema(params, check_mode):
    """Create the database if asked, apply pending migrations; the result dict."""
    created = ensure_database(params, check_mode) if params["create_database"] else False
    if created and check_mode:
        applied, pending = [], list(MIGRATIONS)
    else:
        applied, pending = migrate(params, check_mode)
    latest = MIGRATIONS[-1].version
    before = max(applied) if applied else 0
    return {
        "changed": created or bool(pending),
        "database_created": created,
        "version": latest if pending or applied else 0,
        "applied": [{"version": m.version, "name": m.name} for m in pending],
        "diff": {"before": {"version": before}, "after": {"version": latest}},
    }


def schema_argument_spec():
    spec = pool_db_argument_spec()
    spec.update(
        create_database={"type": "bool", "default": False},
        maintenance_db={"type": "str", "default": "postgres"},
    )
    return spec


def _schema_body(call):
    require_psycopg()
    return ensure_schema(call.params, call.check_mode)


POOL_SCHEMA = ModuleDef(schema_argument_spec, _schema_body)
