# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

Connection options and connections for the pool database (psycopg 3).
"""

from __future__ import annotations

import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib

from ansible_collections.demiurge.gateway.plugins.module_utils._errors import DatabaseError, DependencyError

try:
    import psycopg
except ImportError:
    psycopg = None
    PSYCOPG_IMPORT_ERROR = traceback.format_exc()
else:
    PSYCOPG_IMPORT_ERROR = None

APPLICATION_NAME = "demiurge.gateway"


def pool_db_argument_spec():
    """Connection options shared by every pool module (documented in doc_fragments/pool_db.py)."""
    return {
        "login_host": {"type": "str", "default": "127.0.0.1", "fallback": (env_fallback, ["PGHOST"])},
        "login_port": {"type": "int", "default": 5432, "fallback": (env_fallback, ["PGPORT"])},
        "login_user": {"type": "str", "default": "demiurge", "fallback": (env_fallback, ["PGUSER"])},
        "login_password": {"type": "str", "no_log": True, "fallback": (env_fallback, ["PGPASSWORD"])},
        "login_db": {"type": "str", "default": "demiurge", "fallback": (env_fallback, ["PGDATABASE"])},
        "connect_timeout": {"type": "int", "default": 10},
    }


def require_psycopg():
    if psycopg is None:
        raise DependencyError(missing_required_lib("psycopg>=3.1"), import_error=PSYCOPG_IMPORT_ERROR)


def describe(params, dbname=None):
    return "%s@%s:%s/%s" % (params["login_user"], params["login_host"], params["login_port"], dbname or params["login_db"])


def connect(params, dbname=None, autocommit=False):
    """Open a connection from the shared options; dbname overrides login_db."""
    require_psycopg()
    try:
        return psycopg.connect(
            host=params["login_host"], port=params["login_port"], user=params["login_user"],
            password=params["login_password"], dbname=dbname or params["login_db"],
            connect_timeout=params["connect_timeout"], application_name=APPLICATION_NAME, autocommit=autocommit,
        )
    except psycopg.OperationalError as exc:
        raise DatabaseError(
            "Could not connect to PostgreSQL as %s: %s" % (describe(params, dbname), str(exc).strip()),
            hint="Check login_host, login_port, login_user and login_password (or PGHOST, PGPORT, PGUSER, PGPASSWORD) "
            "and that the server is running",
            outcome="not_applied",
        )
