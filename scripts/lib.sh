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

# find_python newest: the controller's interpreter, DEMIURGE_PYTHON when set, else the newest real
# one >= 3.11 (pyenv shims are skipped: they can point anywhere).
# find_python 311: exactly that version, the system's own (/usr/bin) first.
find_python() {
  local exact=${1#newest} best="" best_ver=0 candidate ver
  if [[ -z $exact && -n ${DEMIURGE_PYTHON:-} ]]; then
    echo "$DEMIURGE_PYTHON"
    return 0
  fi
  for candidate in /usr/bin/python3* /usr/local/bin/python3* "${PYENV_ROOT:-$HOME/.pyenv}"/versions/*/bin/python3; do
    [[ -x $candidate && $candidate =~ python3(\.[0-9]+)?$ ]] || continue
    ver=$(python_number "$candidate") || continue
    if [[ -n $exact ]]; then
      if ((ver == exact)); then best=$candidate && break; fi
    elif ((ver >= 311 && ver > best_ver)); then
      best=$candidate best_ver=$ver
    fi
  done
  if [[ -z $best ]]; then
    echo "error: no Python ${exact:-3.11 or newer} found in /usr/bin, /usr/local/bin or pyenv." >&2
    echo "       Debian 12 ships one: apt-get install python3 python3-venv; then run this script again." >&2
    return 1
  fi
  echo "$best"
}

# 311 for Python 3.11, 313 for 3.13, ...
python_number() { "$1" -c 'import sys; print(sys.version_info[0] * 100 + sys.version_info[1])' 2>/dev/null; }

# The pinned set for an interpreter. ansible-core 2.20 and later need Python 3.12; 2.19 is the
# newest that still runs its controller on 3.11.
constraints_for() {
  if (($1 >= 312)); then echo "$REPO_ROOT/constraints.txt"; else echo "$REPO_ROOT/constraints-py311.txt"; fi
}

# make_venv DIR PYTHON: a venv with requirements.txt under the constraints for that Python; rebuilt
# only when the interpreter or a pin changes. Says which ansible-core it chose and why.
make_venv() {
  local dir=$1 python=$2 number constraints stamp want core
  number=$(python_number "$python") || { echo "error: $python does not run" >&2; return 1; }
  constraints=$(constraints_for "$number")
  core=$(grep -E '^ansible-core==' "$constraints" | cut -d= -f3)
  if ((number >= 312)); then
    say "Python $((number / 100)).$((number % 100)) ($python): ansible-core $core, the main target"
  else
    say "Python $((number / 100)).$((number % 100)) ($python): ansible-core $core, the newest that runs on Python 3.11 (2.20 and later need 3.12)"
  fi
  stamp=$dir/.requirements.sha256
  want=$( (echo "$python"; cat "$REPO_ROOT/requirements.txt" "$constraints") | sha256sum | cut -d' ' -f1)
  [[ -x $dir/bin/python && $(cat "$stamp" 2>/dev/null) == "$want" ]] && return 0
  # Debian's own interpreters ship venv's pip bootstrap in a separate package.
  "$python" -c 'import ensurepip' 2>/dev/null ||
    install_system_packages "python3.$((number % 100))-venv"
  say "Creating $dir with $python"
  "$python" -m venv --clear "$dir"
  pip_install "$dir/bin/pip" --upgrade pip
  pip_install "$dir/bin/pip" -r "$REPO_ROOT/requirements.txt" -c "$constraints"
  echo "$want" >"$stamp"
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
  make_venv "$VENV_DIR" "$(find_python newest)"
  export PATH=$VENV_DIR/bin:$PATH
  install_collection
}

# ansible-rulebook (Event-Driven Ansible) for the autoscaler's rulebook: its own venv, since it pins
# its own dependencies, and Debian's Java 17 for its rule engine. Prints the command's path.
install_rulebook() {
  local venv=$BUILD_DIR/eda-venv
  install_system_packages openjdk-17-jre-headless >&2
  if [[ ! -x $venv/bin/ansible-rulebook ]]; then
    "$(find_python newest)" -m venv --clear "$venv" >&2
    pip_install "$venv/bin/pip" -r "$REPO_ROOT/requirements-eda.txt" >&2 || { rm -rf "$venv"; return 1; }
  fi
  echo "$venv/bin/ansible-rulebook"
}

# Build the collection tarball and install it, so every playbook runs the shipped artifact by FQCN.
install_collection() {
  rm -rf "$BUILD_DIR/collections" "$BUILD_DIR"/demiurge-gateway-*.tar.gz && mkdir -p "$BUILD_DIR"
  (cd "$REPO_ROOT" && ansible-galaxy collection build --force --output-path "$BUILD_DIR" >/dev/null)
  ansible-galaxy collection install --force -p "$ANSIBLE_COLLECTIONS_PATH" \
    "$BUILD_DIR"/demiurge-gateway-*.tar.gz >/dev/null
}
