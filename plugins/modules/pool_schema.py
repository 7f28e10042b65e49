#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pool_schema
short_description: Create or upgrade the gateway pool schema in PostgreSQL
version_added: 0.1.0
description:
  - Applies the collection's versioned migrations of the pool schema (tables C(gateways),
    C(organizations_gateways), C(allocation_steps), C(gateway_events) and the platform's routines).
  - Migrations run under a PostgreSQL advisory lock, so parallel runs apply each migration once;
    each migration runs in one transaction and is recorded with its checksum in
    C(gateway_schema_migrations).
  - Fails without changing anything when the database holds a migration this collection does not
    know, or one whose checksum differs.
  - In check mode, lists the migrations that would run.
extends_documentation_fragment:
  - demiurge.gateway.controller
  - demiurge.gateway.pool_db
  - demiurge.gateway.attributes
options:
  create_database:
    description: Create O(login_db) first when it does not exist, connecting to O(maintenance_db).
    type: bool
    default: false
  maintenance_db:
    description: Database to connect to when creating O(login_db).
    type: str
    default: postgres
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
- name: Bring the pool schema up to date
  demiurge.gateway.pool_schema:
    login_host: 127.0.0.1
    login_port: 15432
    login_password: "{{ pool_db_password }}"

- name: Show pending migrations without applying them
  demiurge.gateway.pool_schema:
  check_mode: true
  register: pending
"""

RETURN = r"""
applied:
  description: Migrations applied by this run (that would be applied, in check mode).
  returned: always
  type: list
  elements: dict
  sample: [{"version": 1, "name": "pool tables, allocation journal, events and routines"}]
version:
  description: Schema version after the run (predicted in check mode).
  returned: always
  type: int
  sample: 1
database_created:
  description: Whether O(login_db) was (or would be) created.
  returned: always
  type: bool
  sample: false
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module
from ansible_collections.demiurge.gateway.plugins.module_utils._pool_schema import POOL_SCHEMA


def main():
    run_module(POOL_SCHEMA)


if __name__ == "__main__":
    main()
