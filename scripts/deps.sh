#!/usr/bin/env bash
# Installs renflow's Debian build and test dependencies when any is missing.
set -euo pipefail
PKGS=(build-essential cmake pkg-config libopenblas-dev liblapacke-dev libcjson-dev libcmocka-dev
      libzip-dev libssl-dev libcairo2-dev libgsl-dev libedf-dev libsqlite3-dev libfftw3-dev
      openmpi-bin libopenmpi-dev chromium poppler-utils python3-jsonschema valgrind)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
