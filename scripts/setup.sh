#!/usr/bin/env bash
# Set up this checkout on a fresh Debian machine: Debian packages (for --test), then .venv.
#   scripts/setup.sh --demo   venv with the runtime extras only (what `shelterwatch demo` needs)
#   scripts/setup.sh --test   Debian packages from scripts/apt-packages.txt + venv with [dev]
# Idempotent: re-running installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:---test}"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "==> installing Debian packages: ${missing[*]}"
  # Keep the packages' own services from starting: tests start their own servers on free ports.
  local rc_made=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    rc_made=1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  [ $rc_made -eq 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d
  return 0
}

if [ "$mode" = "--test" ]; then
  mapfile -t pkgs < <(grep -v '^\s*#' scripts/apt-packages.txt | grep -v '^\s*$')
  apt_install "${pkgs[@]}"
else
  python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
extras="edge,cloud,sim"
[ "$mode" = "--test" ] && extras="dev"
stamp=".venv/.installed-$extras-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -e "$stamp" ]; then
  echo "==> installing Python packages [$extras]"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$extras]"
  touch "$stamp"
fi
