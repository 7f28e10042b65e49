# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The journal option of step modules; matches journal_argument_spec() in module_utils/_journal.py.
    DOCUMENTATION = r"""
options:
  journal:
    description:
      - "Record this call as a step of an allocation in the pool database, so that a run killed
        midway can be repaired: C(started) before the work, then C(done), C(failed) when the module
        knows nothing was applied, or C(unknown) when it may have been (a timeout, a lost connection,
        an unreachable host). Each write also extends the allocation's lease, and only the run that
        holds the lease (O(journal.lease_holder)) may write. Nothing is journaled in check mode."
      - The action plugin writes the records on the controller, one per step and host (the task's
        C(delegate_to) host, else its inventory host), and takes this option out of the arguments
        before the module runs, so a managed host never needs the pool database or its password.
      - Takes the pool database's connection options (as M(demiurge.gateway.pool_allocation)) plus
        the keys below.
    type: dict
    suboptions:
      allocation_id:
        description:
          - Allocation the step belongs to.
          - Exactly one of O(journal.allocation_id) and O(journal.allocations) is required.
        type: str
      allocations:
        description:
          - For a call that changes many organizations at once (O(demiurge.gateway.pdns_rrset#module:organizations),
            O(demiurge.gateway.edge_route#module:routes)), the allocation of each organization, by
            organization UUID. Each gets its own records, and the outcome of its own organization.
          - Every organization the call changes must be named here. One whose allocation is not live
            under this run's lease is left out of the work and fails alone.
        type: dict
      step:
        description: Step name, for example C(dns).
        type: str
        required: true
      lease_seconds:
        description: New lease of the allocation from now.
        type: int
        default: 600
      lease_holder:
        description: This run's lease holder id, as M(demiurge.gateway.pool_allocation) returned it.
        type: str
      login_host:
        description: Pool database host. Falls back to E(PGHOST).
        type: str
        default: 127.0.0.1
      login_port:
        description: Pool database port. Falls back to E(PGPORT).
        type: int
        default: 5432
      login_user:
        description: Pool database role. Falls back to E(PGUSER).
        type: str
        default: demiurge
      login_password:
        description: Password of O(journal.login_user). Falls back to E(PGPASSWORD).
        type: str
      login_db:
        description: Pool database. Falls back to E(PGDATABASE).
        type: str
        default: demiurge
      connect_timeout:
        description: Seconds to wait for a connection.
        type: int
        default: 10
"""
