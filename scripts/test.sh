#!/usr/bin/env bash
# README command 2: run every test. Installs what it needs; .ci/run calls exactly this.
# Stages can be picked: scripts/test.sh unit sanity ... (default: all, in this order).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TEST_ENV=${DEMIURGE_TEST_ENV:-test-001}
TEST_PORT_BASE=${DEMIURGE_TEST_PORT_BASE:-16000}
TEST_GATEWAYS=20
SANITY_ROOT=$BUILD_DIR/ansible-test/ansible_collections/demiurge/gateway
SOURCE_ROOT=$BUILD_DIR/src
ALL_STAGES=(unit sanity lint stack integration system compat molecule)
# Long commands run under `timeout`, so a hang fails its stage instead of eating CI's 90 minutes.
passed=() failed=()

# ansible-test needs the ansible_collections/<ns>/<name> layout and its own git index.
stage_copy() {
  rm -rf "$SANITY_ROOT" && mkdir -p "$SANITY_ROOT"
  (cd "$REPO_ROOT" && git ls-files -co --exclude-standard -z | xargs -0 tar -cf - --) | tar -xf - -C "$SANITY_ROOT"
  (cd "$SANITY_ROOT" && git init -q && git add -A)
  # ansible-test bootstraps pip from a host CI cannot reach; ensurepip does the same job.
  local pip_version
  pip_version=$(python - <<'PY'
import pathlib, re, ansible_test
source = (pathlib.Path(ansible_test.__file__).parent / "_internal/python_requirements.py").read_text()
print(re.search(r"pip='([0-9.]+)'", source).group(1).replace(".", "_"))
PY
)
  mkdir -p "$HOME/.ansible/test/cache"
  cp "$REPO_ROOT/scripts/get_pip_standin.py" "$HOME/.ansible/test/cache/get_pip_${pip_version}.py"
}

py_version() { python -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }

stage_unit() {
  mkdir -p "$SOURCE_ROOT/ansible_collections/demiurge"
  ln -sfn "$REPO_ROOT" "$SOURCE_ROOT/ansible_collections/demiurge/gateway"
  PYTHONPATH=$SOURCE_ROOT python -m pytest -p no:cacheprovider -q "$REPO_ROOT/tests/unit"
  # The alert rules' own unit tests.
  install_system_packages prometheus
  promtool test rules "$REPO_ROOT/tests/prometheus/demiurge_gateway.rules.test.yml"
}

stage_sanity() {
  install_system_packages shellcheck
  stage_copy
  (cd "$SANITY_ROOT" && timeout 1200 ansible-test sanity --venv --python "$(py_version)" --color no)
}

stage_lint() {
  (cd "$REPO_ROOT" && ansible-lint && antsibull-changelog lint)
  install_system_packages prometheus
  promtool check rules "$REPO_ROOT/roles/monitoring/files/demiurge_gateway.rules.yml"
}

stack_playbook() {
  DEMIURGE_ENV=$TEST_ENV DEMIURGE_PORT_BASE=$TEST_PORT_BASE ansible-playbook demiurge.gateway.local_stack \
    -e local_stack_gateways="$TEST_GATEWAYS" -e local_stack_monitoring=true -e @"$REPO_ROOT/tests/system/monitoring_vars.yml" "$@"
}

stage_stack() {
  # A run starts from nothing: what an earlier run, a killed test or a benchmark left goes first.
  stack_playbook -e local_stack_state=absent >/dev/null
  stack_playbook
  # A second converge must change nothing.
  local second recap
  # Captured, not tee'd to /dev/stderr: re-opening that truncates a log file stderr points to.
  second=$(stack_playbook)
  printf '%s\n' "$second"
  recap=$(grep -E '^localhost +:' <<<"$second")
  [[ $recap =~ changed=0\ .*failed=0\  ]] || { echo "second converge of $TEST_ENV was not clean: $recap" >&2; return 1; }
}

test_env_vars() {
  export DEMIURGE_TEST_PG_PORT=$((TEST_PORT_BASE + 432))
  export DEMIURGE_TEST_DNS_PORT=$((TEST_PORT_BASE + 353))
  export DEMIURGE_TEST_PDNS_API_URL=http://127.0.0.1:$((TEST_PORT_BASE + 81))
  export DEMIURGE_TEST_HTTP_PORT=$((TEST_PORT_BASE + 80))
  export DEMIURGE_TEST_ENV=$TEST_ENV DEMIURGE_TEST_PORT_BASE=$TEST_PORT_BASE DEMIURGE_TEST_GATEWAYS=$TEST_GATEWAYS
  export DEMIURGE_TEST_REPO=$REPO_ROOT
  export DEMIURGE_TEST_DOMAIN=$TEST_ENV.demiurge.test
  DEMIURGE_TEST_EDGE_ROOT=$(state_path "$TEST_ENV" nginx)
  export DEMIURGE_TEST_EDGE_ROOT
  DEMIURGE_TEST_PG_PASSWORD=$(cat "$(state_path "$TEST_ENV" secrets pool_db_password)")
  DEMIURGE_TEST_PDNS_API_KEY=$(cat "$(state_path "$TEST_ENV" secrets pdns_api_key)")
  export DEMIURGE_TEST_PG_PASSWORD DEMIURGE_TEST_PDNS_API_KEY
}

# The one path helper, from the shell.
state_path() {
  PYTHONPATH=$SOURCE_ROOT python -c 'import sys; from ansible_collections.demiurge.gateway.plugins.module_utils._paths import state_path; print(state_path(*sys.argv[1:]))' "$@"
}

write_integration_config() {
  test_env_vars
  cat >"$1/tests/integration/integration_config.yml" <<YAML
---
pg_port: $DEMIURGE_TEST_PG_PORT
pg_password: $DEMIURGE_TEST_PG_PASSWORD
dns_port: $DEMIURGE_TEST_DNS_PORT
pdns_api_url: $DEMIURGE_TEST_PDNS_API_URL
pdns_api_key: $DEMIURGE_TEST_PDNS_API_KEY
daemon_port: $((TEST_PORT_BASE + 900))
edge_root: $DEMIURGE_TEST_EDGE_ROOT
edge_url: http://127.0.0.1:$DEMIURGE_TEST_HTTP_PORT
edge_domain: $DEMIURGE_TEST_DOMAIN
standin_script: $REPO_ROOT/roles/gateway_standin/files/gateway_standin.py
YAML
}

stage_integration() {
  stage_copy
  write_integration_config "$SANITY_ROOT"
  (cd "$SANITY_ROOT" && timeout 900 ansible-test integration --local --allow-destructive --python "$(py_version)" --color no)
}

# Extra arguments go to pytest (the compat stage leaves the kill matrices to this stage).
stage_system() {
  test_env_vars
  # The platform's real gateway (../shared/realgw) runs on Node.js; its tests skip, saying why, without it.
  command -v node >/dev/null || install_system_packages nodejs
  DEMIURGE_TEST_RULEBOOK=$(install_rulebook)
  export DEMIURGE_TEST_RULEBOOK
  # ansible-runner forks from test threads; the forkpty warning that causes is noise here. The
  # stage takes about 37 minutes; timeout signals the whole process group, a test's playbook too.
  # The slowest tests are listed, to see where the suite's time goes.
  timeout 2700 env PYTHONPATH="$SOURCE_ROOT:$REPO_ROOT/tests/system" python -m pytest -p no:cacheprovider -q -rs -W ignore::DeprecationWarning \
    --durations=25 "$REPO_ROOT/tests/system" "$@"
}

# The stock Debian 12 path: the system's own Python 3.11 with ansible-core 2.19, the oldest core
# requires_ansible allows. Every stage but the kill matrices (which the system stage ran) on that
# controller: unit, sanity, lint, integration, command 1's main job on a stack of its own (which
# converges the roles molecule tests, so molecule itself runs once, in its own stage), the
# benchmarks' imports, the system tests (of the real hosts, the full cycle).
COMPAT_ENV=compat-001
# Between dev-001 (15000) and test-001 (16000), clear of both: the stack uses base + 80 to 443 and
# its gateways base + 501 upwards.
COMPAT_PORT_BASE=15500
stage_compat() {
  local venv=$BUILD_DIR/compat-venv python
  python=$(find_python 311)
  if [[ $(readlink -f "$VENV_DIR/bin/python") == "$(readlink -f "$python")" ]]; then
    say "compat: the main stages already ran on $python; nothing more to prove"
    return 0
  fi
  make_venv "$venv" "$python"
  (
    export PATH=$venv/bin:$PATH
    ansible --version | sed -n 1p  # sed reads it all: head would break the pipe under pipefail
    install_collection
    stage_unit
    stage_sanity
    stage_lint
    stage_integration
    local up=0
    DEMIURGE_VENV=$venv DEMIURGE_PYTHON=$python DEMIURGE_ENV=$COMPAT_ENV DEMIURGE_PORT_BASE=$COMPAT_PORT_BASE \
      timeout 900 bash "$REPO_ROOT/scripts/up.sh" || up=$?
    (cd "$REPO_ROOT" && DEMIURGE_ENV=$COMPAT_ENV DEMIURGE_PORT_BASE=$COMPAT_PORT_BASE \
      ansible-playbook demiurge.gateway.local_stack -e local_stack_state=absent >/dev/null)
    ((up == 0)) || { echo "command 1 failed on $python (exit $up)" >&2; exit 1; }
    # The README's benchmarks run after command 1 alone: each must at least import.
    for bench in "$REPO_ROOT"/benchmarks/*.py; do python "$bench" --help >/dev/null; done
    # The real hosts' faults ran in the system stage; the full cycle across hosts proves this controller.
    # Left to the system stage too: the thirty racing runs (the pool's SQL decides them, whatever the
    # controller), the integration targets over SSH (run above on this controller, and its SSH path
    # is the full cycle's), and the modules that run no playbook at all: edge routing's Python
    # against nginx, the pool's SQL under racing claims. Of the real gateway, the full cycle: the
    # rest is the gateway's behaviour, not the controller's.
    stage_system -m "not kill_matrix and not real_hosts and not event_driven" \
      -k "(not autoscale or check_mode) and not thirty_parallel and not each_integration_target_passes_over_ssh and not test_edge_routing and not test_pool_concurrency and (not test_real_gateway or full_cycle_with_the_real_gateway)"
    stage_system -m real_hosts -k full_cycle
  )
}

stage_molecule() {
  (cd "$REPO_ROOT" && timeout 900 molecule test -s default)
}

main() {
  local stages=("$@")
  ((${#stages[@]})) || stages=("${ALL_STAGES[@]}")
  bootstrap
  mkdir -p "$SOURCE_ROOT/ansible_collections/demiurge"
  ln -sfn "$REPO_ROOT" "$SOURCE_ROOT/ansible_collections/demiurge/gateway"
  for stage in "${stages[@]}"; do
    say "Stage: $stage"
    local started=$SECONDS
    # Not inside a conditional: bash would ignore set -e within the whole stage.
    set +e
    (set -e; "stage_$stage")
    local status=$?
    set -e
    if ((status == 0)); then passed+=("$stage"); else failed+=("$stage"); fi
    echo "stage $stage finished in $((SECONDS - started)) s"
  done
  say "Passed stages: ${passed[*]:-none}"
  ((${#failed[@]} == 0)) || say "FAILED stages: ${failed[*]}"
  echo "stages: ${#passed[@]} passed, ${#failed[@]} failed"
  ((${#failed[@]} == 0))
}

main "$@"
