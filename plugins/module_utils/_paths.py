# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PRIVATE to demiurge.gateway: may change without notice.

The one helper that builds local state paths: <LOCAL_DEV_DIR>/<env name>/<parts...>.
Roles reach it through the demiurge.gateway.state_path filter, modules import it.
Nothing else in the collection spells a state path.
"""

from __future__ import annotations

import os
import re

from ansible_collections.demiurge.gateway.plugins.module_utils._errors import InvalidInputError

LOCAL_DEV_DIR_VAR = "LOCAL_DEV_DIR"
# Not under /root (the platform's old place): services run as postgres, pdns and www-data and
# must be able to traverse every parent directory.
DEFAULT_LOCAL_DEV_DIR = "/var/lib/demiurge"
DEFAULT_ENV_NAME = "dev-001"

_ENV_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def validate_env_name(name):
    """Return name if it is a safe single path component, else raise InvalidInputError."""
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name) or ".." in name:
        raise InvalidInputError(
            "Invalid environment name %r" % (name,),
            hint="Use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit, "
            "with no '/', '..' or whitespace (for example %s)" % DEFAULT_ENV_NAME,
        )
    return name


def local_dev_dir(base=None, environ=None):
    """Absolute root of all environments: base, else $LOCAL_DEV_DIR, else the default."""
    environ = os.environ if environ is None else environ
    root = base or environ.get(LOCAL_DEV_DIR_VAR) or DEFAULT_LOCAL_DEV_DIR
    root = os.path.expanduser(root)
    if not os.path.isabs(root):
        raise InvalidInputError(
            "State root %r is not an absolute path" % (root,),
            hint="Set %s to an absolute directory" % LOCAL_DEV_DIR_VAR,
        )
    return os.path.normpath(root)


def state_path(env_name, *parts, **kwargs):
    """<root>/<env_name>/<parts...>; each part must stay inside the environment."""
    base = kwargs.pop("base", None)
    environ = kwargs.pop("environ", None)
    if kwargs:
        raise TypeError("unexpected arguments: %s" % ", ".join(sorted(kwargs)))
    path = os.path.join(local_dev_dir(base, environ), validate_env_name(env_name))
    for part in parts:
        for piece in str(part).split("/"):
            if piece in ("", ".", "..") or piece != piece.strip():
                raise InvalidInputError(
                    "Invalid state path component %r under environment %s" % (part, env_name),
                    hint="Use relative names without '..', empty or blank segments",
                )
            path = os.path.join(path, piece)
    return path
