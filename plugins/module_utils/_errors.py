# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

One exception hierarchy for the whole collection. Modules raise these; the
single handler in _module.run_module turns them into fail_json, so every
message names the target and says what to do.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the collection reports on purpose. `outcome` says whether the work may
    have been applied anyway ("unknown", the default) or certainly was not ("not_applied"); an
    instance may say otherwise through its details."""

    outcome = "unknown"

    def __init__(self, msg, hint=None, **details):
        super().__init__(msg)
        self.msg = msg
        self.hint = hint
        self.details = details

    def __str__(self):
        return self.msg if not self.hint else "%s. %s" % (self.msg.rstrip("."), self.hint)


class InvalidInputError(GatewayError):
    """The caller asked for something malformed; nothing was changed."""

    outcome = "not_applied"


class DependencyError(GatewayError):
    """A Python library or system program the task needs is missing."""


class ServiceError(GatewayError):
    """A local service (process) could not be started, stopped or signalled."""


class DatabaseError(GatewayError):
    """PostgreSQL refused a connection or a statement."""


class SchemaError(DatabaseError):
    """The pool schema in the database disagrees with the collection's migrations."""


class PoolExhaustedError(DatabaseError):
    """No ready gateway is left in the pool."""

    outcome = "not_applied"


class PdnsError(GatewayError):
    """PowerDNS API call failed."""

    def __init__(self, msg, hint=None, status=None, body=None, **details):
        super().__init__(msg, hint=hint, status=status, body=body, **details)
        self.status = status
        self.body = body


class PdnsAuthError(PdnsError):
    """PowerDNS refused the API key."""


class PdnsNotFoundError(PdnsError):
    """The server id or zone does not exist on that PowerDNS."""


class PdnsUnreachableError(PdnsError):
    """PowerDNS could not be reached, even after retries."""


class LeaseHeldError(GatewayError):
    """Another run holds the allocation's lease: this run neither runs nor undoes its steps."""

    outcome = "not_applied"


class StorageError(GatewayError):
    """The operating system refused a file operation (disk full, read-only, permissions)."""


class HostUnreachableError(GatewayError):
    """A managed host did not answer on its connection; what the task did there is unknown."""


class HostSetupError(GatewayError):
    """A lab host's network or mount namespace could not be made or removed."""
