#!/usr/bin/env bash
# README command 1: set everything up, then run the main job: allocate a gateway to a demo
# organization on the local stack and show it answering through nginx by its DNS name.
# Environment: DEMIURGE_ENV (default dev-001), DEMIURGE_PORT_BASE (default 15000), LOCAL_DEV_DIR,
# DEMIURGE_DEMO_ORG (default below).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ENV_NAME=${DEMIURGE_ENV:-dev-001}
PORT_BASE=${DEMIURGE_PORT_BASE:-15000}
DEMO_ORG=${DEMIURGE_DEMO_ORG:-0b5e9b7c-1a2b-4c3d-8e9f-001122334455}

bootstrap
cd "$REPO_ROOT" || exit 1
say "Bringing up the local stack ($ENV_NAME)"
ansible-playbook demiurge.gateway.local_stack "$@"

say "Allocating a gateway to organization $DEMO_ORG"
ansible-playbook demiurge.gateway.allocate -e organization_id="$DEMO_ORG"

host=org-$DEMO_ORG.$ENV_NAME.demiurge.test
address=$(dig +short -p $((PORT_BASE + 353)) @127.0.0.1 "$host" A)
say "$host resolves to $address (PowerDNS); asking its gateway for GET /collab/ping through nginx"
curl -sS --fail --resolve "$host:$((PORT_BASE + 80)):$address" "http://$host:$((PORT_BASE + 80))/collab/ping"
echo
