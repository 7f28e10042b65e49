#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Demiurge platform team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: edge_route
short_description: Route an organization's host names to its gateway on an nginx edge
version_added: 0.1.0
description:
  - Manages one organization's route on an edge prepared by the C(demiurge.gateway.edge) role. The
    route maps C(org-<uuid>.<domain>) and every name below it (for example
    C(uc-<id>.org-<uuid>.<domain>)) to the gateway's upstream, for HTTP and WebSocket.
  - Routes live in 256 shard files C(<config_root>/routes/orgs-<xx>.conf), picked by the first two hex
    digits of the organization id, so a change stays cheap as organizations grow (at 10,000
    organizations, C(nginx -t) takes about 30 ms with shards against about 90 ms with one file each).
  - "Every change runs under the edge's lock: the route file is written, C(nginx -t) tests the whole
    configuration, nginx reloads, and with O(listen_url) the module waits until the live nginx serves
    the new route."
  - Changes are group-committed. A call queues its change on the edge (C(run/route-queue/)), and the
    job that holds the lock next applies every queued change with one C(nginx -t) and one reload, so
    concurrent jobs share a validation and a reload instead of waiting for one each; each job still
    gets its own result. A call that cannot get its change taken within O(lock_timeout) withdraws
    it and fails, having changed nothing. A change made by a job that died while it held the lock
    is made live by the next one.
  - If C(nginx -t) rejects the change, or the reload does not take effect, the shard is put back as it
    was when the lock was taken, nginx keeps or gets back the previous configuration, and the task
    fails quoting nginx's message with file and line. Other jobs' finished changes are never undone.
  - If the configuration was already broken by another file, the module says so and changes nothing,
    unless O(force=true).
  - nginx reloads only when the route changed.
  - With O(reach_path), a present route counts only once a C(GET) of that path for the
    organization's name through this edge (O(listen_url)) is answered 200 by the route's upstream,
    as nginx itself reports (the C(X-Demiurge-Reached) header, its C($upstream_addr)). A route that
    is not is left in place for the caller's rollback, its outcome unknown, and the failure is the
    gateway's (RV(gateway_fault)). An edge that cannot reach the gateway (such as a gateway bound to
    127.0.0.1 on another host) never serves its organization.
  - With O(routes), many organizations' routes change together under one lock, with one C(nginx -t)
    and one reload for the whole batch. Each organization that cannot change (another owner, a bad
    upstream, an entry nginx rejects) fails alone; the batch is halved until nginx accepts the rest,
    which goes live, and the task then fails naming each organization and its cause
    (RV(failed_organizations)).
extends_documentation_fragment:
  - demiurge.gateway.controller
  - demiurge.gateway.journal
  - demiurge.gateway.attributes
options:
  config_root:
    description: The edge's nginx prefix (holds C(nginx.conf), C(routes/) and C(run/)).
    type: path
    required: true
  config_file:
    description: Main configuration file. Defaults to C(<config_root>/nginx.conf).
    type: path
  organization:
    description:
      - Organization UUID; the host name is C(org-<uuid>.<domain>).
      - Exactly one of O(organization) and O(routes) is required.
    type: str
  routes:
    description:
      - Many organizations' routes, changed with one validation and one reload. O(upstream),
        O(owner) and O(state) then come from each entry; O(domain), O(force) and the rest apply to all.
    type: list
    elements: dict
    suboptions:
      organization:
        description: Organization UUID.
        type: str
        required: true
      upstream:
        description: The gateway's C(<ip>:<port>). Required for O(routes[].state=present).
        type: str
      owner:
        description: Owner recorded in the route, normally the allocation id; checked as O(owner) is.
        type: str
      state:
        description: Whether the route exists.
        type: str
        choices: [present, absent]
        default: present
  domain:
    description: Domain of the organization host names.
    type: str
    required: true
  upstream:
    description: The gateway's C(<ip>:<port>). Required for O(state=present).
    type: str
  state:
    description: Whether the route exists.
    type: str
    choices: [present, absent]
    default: present
  owner:
    description:
      - Owner recorded in the route file, normally the allocation id. A call that names an owner
        refuses to replace or delete a route owned by another owner unless O(force=true).
    type: str
  force:
    description:
      - Take over a route owned by someone else; write the route even when another file breaks the
        configuration (it goes live with the first reload after that file is fixed).
    type: bool
    default: false
  listen_url:
    description:
      - URL where the edge listens, for example C(http://127.0.0.1:15080). When set, the module
        confirms after the reload that nginx serves the change, and rolls back if it does not.
    type: str
  nginx_binary:
    description: Path of the nginx program.
    type: path
    default: /usr/sbin/nginx
  reload_timeout:
    description: Seconds to wait for a reload to take effect.
    type: float
    default: 10
  lock_timeout:
    description:
      - Seconds to wait for the change to be taken by the edge lock's holder (this job or another).
        Once taken, the call waits as long again for the holder to finish; past that, it fails
        saying the outcome is unknown.
    type: float
    default: 60
  reach_path:
    description:
      - A path the gateway answers with 200, such as its health check C(/collab/ping). Each present
        route is then checked through the edge as described above. Needs O(listen_url).
    type: str
    version_added: 0.5.0
  reach_timeout:
    description: Seconds to wait for a route to reach its gateway through the edge.
    type: float
    default: 5
    version_added: 0.5.0
notes:
  - Runs on the edge host. In check mode nothing is written and nginx is not tested.
seealso:
  - module: demiurge.gateway.pdns_rrset
author:
  - Demiurge platform team (@demiurge)
"""

EXAMPLES = r"""
- name: Route an organization to its gateway
  demiurge.gateway.edge_route:
    config_root: "{{ 'dev-001' | demiurge.gateway.state_path('nginx') }}"
    organization: 0b5e9b7c-1a2b-4c3d-8e9f-001122334455
    domain: dev-001.demiurge.test
    upstream: 127.0.0.1:21001
    owner: "{{ allocation_id }}"
    listen_url: http://127.0.0.1:15080

- name: Restore many routes with one validation and one reload
  demiurge.gateway.edge_route:
    config_root: "{{ 'dev-001' | demiurge.gateway.state_path('nginx') }}"
    domain: dev-001.demiurge.test
    listen_url: http://127.0.0.1:15080
    routes:
      - organization: 0b5e9b7c-1a2b-4c3d-8e9f-001122334455
        upstream: 127.0.0.1:21001
        owner: 5d0f6c1e-3b7a-4e51-9a55-0e6f1c2d3b4a
      - organization: 7c1d2e3f-4a5b-4c6d-8e7f-8899aabbccdd
        upstream: 127.0.0.1:21002
        owner: 0a1b2c3d-4e5f-4a6b-8c7d-8e9f00112233

- name: Remove the route (a no-op when it is gone)
  demiurge.gateway.edge_route:
    config_root: "{{ 'dev-001' | demiurge.gateway.state_path('nginx') }}"
    organization: 0b5e9b7c-1a2b-4c3d-8e9f-001122334455
    domain: dev-001.demiurge.test
    owner: "{{ allocation_id }}"
    state: absent
"""

RETURN = r"""
host:
  description: The organization's host name (its subdomains are routed too).
  returned: with O(organization)
  type: str
  sample: org-0b5e9b7c-1a2b-4c3d-8e9f-001122334455.dev-001.demiurge.test
path:
  description: The shard file that holds the route.
  returned: with O(organization)
  type: str
  sample: /srv/edge/nginx/routes/orgs-0b.conf
upstream:
  description: Normalised upstream, null for V(absent).
  returned: with O(organization)
  type: str
  sample: 127.0.0.1:21001
changed_organizations:
  description: The organizations whose routes changed (in check mode, would change).
  returned: with O(routes)
  type: list
  elements: str
  sample: ["0b5e9b7c-1a2b-4c3d-8e9f-001122334455"]
made_live:
  description:
    - Whether this call made live the changes that a job which died while it held the edge's lock
      had written but not reloaded (in check mode, whether it would). O(routes) may then be empty;
      reconcile.yml calls it so for an edge whose
      RV(demiurge.gateway.edge_route_info#module:unfinished) is true.
  returned: with O(routes)
  type: bool
  sample: false
failed_organizations:
  description: Each organization whose route could not change, with the cause.
  returned: with O(routes)
  type: dict
  sample:
    7c1d2e3f-4a5b-4c6d-8e7f-8899aabbccdd: >-
      Route of org-7c1d2e3f-4a5b-4c6d-8e7f-8899aabbccdd in /srv/edge/nginx/routes/orgs-7c.conf is owned by
      1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b, not by 0a1b2c3d-4e5f-4a6b-8c7d-8e9f00112233
unknown_organizations:
  description:
    - The organizations of RV(failed_organizations) whose routes may have changed all the same (a
      request that timed out may have been applied); the others certainly did not change.
  returned: with O(routes)
  type: list
  elements: str
  sample: []
gateway_faults:
  description: The organizations of RV(failed_organizations) whose gateway this edge did not reach.
  returned: with O(routes)
  type: list
  elements: str
  sample: []
  version_added: 0.5.0
gateway_fault:
  description: True when the call failed because this edge did not reach the organization's gateway.
  returned: failure
  type: bool
  sample: true
  version_added: 0.5.0
nginx_error:
  description: nginx's message when it rejected the configuration.
  returned: failure
  type: str
  sample: 'nginx: [emerg] invalid number of arguments in "map" directive in /srv/edge/nginx/routes/orgs-0b.conf:3'
current_owner:
  description: Owner of the route that blocked the call, when it failed for that reason.
  returned: failure
  type: str
  sample: 5d0f6c1e-3b7a-4e51-9a55-0e6f1c2d3b4a
"""

from ansible_collections.demiurge.gateway.plugins.module_utils._edge_route import EDGE_ROUTE
from ansible_collections.demiurge.gateway.plugins.module_utils._module import run_module


def main():
    run_module(EDGE_ROUTE)


if __name__ == "__main__":
    main()
