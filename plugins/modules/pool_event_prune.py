#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pool_event_prune
short_description: Delete old pool events
version_added: 0.3.0
description:
  - Deletes events older than O(older_than_days) that every reader has already read - the event sinks
    (the log file, the webhook) and the rollup behind the metrics, which it first brings up to date -
    in batches of O(batch_size), each in its own short transaction.
  - The metrics read counters and histograms from tables of their own, so pruning never makes a counter
    go down.
  - Events an event sink has not read yet are kept, with a warning naming how many.
extends_documentation_fragment:
  - demiurge.gateway.controller
  - demiurge.gateway.pool_db
  - demiurge.gateway.attributes
attributes:
  diff_mode:
    support: none
    details: The result counts the events deleted (RV(pruned)).
options:
  older_than_days:
    description: Age in days (1 or more) beyond which events are deleted.
    type: float
    required: true
  batch_size:
    description: Events deleted per transaction.
    type: int
    default: 10000
seealso:
  - module: demiurge.gateway.pool_event_info
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
- name: Keep 90 days of events
  demiurge.gateway.pool_event_prune:
    older_than_days: 90
"""

RETURN = r"""
pruned:
  description: Events deleted (in check mode, that would be).
  returned: always
  type: int
  sample: 120000
kept_unshipped:
  description: Old events kept because an event sink has not read them yet.
  returned: always
  type: int
  sample: 0
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._pool_events import POOL_EVENT_PRUNE
from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module


def main():
    run_module(POOL_EVENT_PRUNE)


if __name__ == "__main__":
    main()
