# Shared by scripts/up.sh and scripts/test.sh: source it, then call bootstrap.
# shellcheck shell=bash
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV_DIR=${DEMIURGE_VENV:-$REPO_ROOT/.venv}
BUILD_DIR=$REPO_ROOT/.build
export ANSIBLE_COLLECTIONS_PATH=$BUILD_DIR/collections
export ANSIBLE_CONFIG=$REPO_ROOT/ansible.cfg
export PIP_DISABLE_PIP_VERSION_CHECK=1

say() { printf '\n==> %s\n' "$*"; }

# Newest real interpreter >= 3.12 (pyenv shims are skipped: they can point anywhere).
find_python() {
  local best="" best_ver=0 candidate ver
  for candidate in /usr/bin/python3* /usr/local/bin/python3* "${PYENV_ROOT:-$HOME/.pyenv}"/versions/*/bin/python3; do
    [[ -x $candidate && $candidate =~ python3(\.[0-9]+)?$ ]] || continue
    ver=$("$candidate" -c 'import sys; print(sys.version_info[0] * 100 + sys.version_info[1])' 2>/dev/null) || continue
    if (( ver >= 312 && ver > best_ver )); then best=$candidate best_ver=$ver; fi
  done
  if [[ -z $best ]]; then
    echo "error: no Python 3.12 or newer found in /usr/bin, /usr/local/bin or pyenv." >&2
    echo "       Install one (for example 'pyenv install 3.13') and run this script again." >&2
    return 1
  fi
  echo "$best"
}

install_system_packages() {
  local missing=()
  for pkg in "$@"; do dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg"); done
  if ((${#missing[@]})); then
    say "Installing Debian packages: ${missing[*]}"
    apt-get update -qq -o Acquire::Retries=3
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Acquire::Retries=3 --no-install-recommends \
      "${missing[@]}" >/dev/null
  fi
}

# PyPI stalls now and then, and pip gives up on a stalled read only after its timeout (180 s on the
# build machines, from PIP_DEFAULT_TIMEOUT). Wait less, and try again.
pip_install() {
  local pip=$1 attempt
  shift
  for attempt in 1 2 3; do
    "$pip" install -q --timeout 30 "$@" && return 0
    echo "pip install failed (attempt $attempt of 3)" >&2
  done
  return 1
}

bootstrap() {
  install_system_packages git ca-certificates
  local stamp=$VENV_DIR/.requirements.sha256 want
  want=$(cat "$REPO_ROOT/requirements.txt" "$REPO_ROOT/constraints.txt" | sha256sum | cut -d' ' -f1)
  if [[ ! -x $VENV_DIR/bin/python || $(cat "$stamp" 2>/dev/null) != "$want" ]]; then
    local python
    python=$(find_python)
    say "Creating $VENV_DIR with $python"
    "$python" -m venv --clear "$VENV_DIR"
    pip_install "$VENV_DIR/bin/pip" --upgrade pip
    pip_install "$VENV_DIR/bin/pip" -r "$REPO_ROOT/requirements.txt" -c "$REPO_ROOT/constraints.txt"
    echo "$want" >"$stamp"
  fi
  export PATH=$VENV_DIR/bin:$PATH
  install_collection
}

# Build the collection tarball and install it, so every playbook runs the shipped artifact by FQCN.
install_collection() {
  rm -rf "$BUILD_DIR/collections" && mkdir -p "$BUILD_DIR"
  (cd "$REPO_ROOT" && ansible-galaxy collection build --force --output-path "$BUILD_DIR" >/dev/null)
  ansible-galaxy collection install --force -p "$ANSIBLE_COLLECTIONS_PATH" \
    "$BUILD_DIR"/demiurge-gateway-*.tar.gz >/dev/null
}
