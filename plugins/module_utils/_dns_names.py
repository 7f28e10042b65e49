# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

DNS names as PowerDNS wants them: lower case, absolute (trailing dot).
"""

from __future__ import annotations

import re

from ansible_collections.demiurge.gateway.plugins.module_utils._errors import InvalidInputError

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)\Z")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
ORG_LABEL = re.compile(r"^org-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def canonical(name, what="name"):
    """Lower-case absolute form of a DNS name; raise InvalidInputError when malformed."""
    if not isinstance(name, str) or not name.strip("."):
        raise InvalidInputError("Empty DNS %s" % what, hint="Give a name such as example.test.")
    absolute = name.strip().lower().rstrip(".") + "."
    labels = absolute[:-1].split(".")
    for index, label in enumerate(labels):
        if label == "*" and index == 0:
            continue
        if not _LABEL.match(label):
            raise InvalidInputError("DNS %s %r has an invalid label %r" % (what, name, label),
                                    hint="Use labels of 1-63 letters, digits, '-' or '_', not starting or ending with '-'")
    if len(absolute) > 254:
        raise InvalidInputError("DNS %s %r is longer than 253 characters" % (what, name))
    return absolute


def in_zone(name, zone):
    return name == zone or name.endswith("." + zone)


def require_in_zone(name, zone):
    if not in_zone(name, zone):
        raise InvalidInputError("Record name %s is not inside zone %s" % (name, zone),
                                hint="Use a name ending in .%s or pick the zone that holds it" % zone)


def organization_id(organization):
    """The canonical (lower-case) form of an organization's UUID. Any case is accepted; anything
    else, surrounding white space included, is refused: an id is compared and stored as given."""
    org = str(organization).lower()
    if not _UUID.match(org):
        raise InvalidInputError("Organization id %r is not a UUID" % (organization,),
                                hint="Pass the organization's UUID alone, for example 0b5e9b7c-1a2b-4c3d-8e9f-001122334455")
    return org


def organization_label(organization):
    """The organization's DNS label, org-<uuid>."""
    return "org-" + organization_id(organization)
