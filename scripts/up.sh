#!/usr/bin/env bash
# README command 1: set everything up and run the main job on the local stack.
# Environment: DEMIURGE_ENV (default dev-001), DEMIURGE_PORT_BASE (default 15000), LOCAL_DEV_DIR.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bootstrap
say "Bringing up the local stack (${DEMIURGE_ENV:-dev-001})"
ansible-playbook demiurge.gateway.local_stack "$@"
