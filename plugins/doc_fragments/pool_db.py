# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Connection to the pool database; matches pool_db_argument_spec() in module_utils/_pool_db.py.
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host of the PostgreSQL server holding the gateway pool.
      - Falls back to E(PGHOST).
    type: str
    default: 127.0.0.1
  login_port:
    description:
      - Port of that server. Falls back to E(PGPORT).
    type: int
    default: 5432
  login_user:
    description:
      - Role to log in as. Falls back to E(PGUSER).
    type: str
    default: demiurge
  login_password:
    description:
      - Password of O(login_user). Falls back to E(PGPASSWORD).
    type: str
  login_db:
    description:
      - Database holding the pool schema. Falls back to E(PGDATABASE).
    type: str
    default: demiurge
  connect_timeout:
    description: Seconds to wait for a connection.
    type: int
    default: 10
requirements:
  - psycopg >= 3.1 on the host that runs the module
notes:
  - Every value reaches PostgreSQL as a query parameter, never spliced into SQL text.
"""
