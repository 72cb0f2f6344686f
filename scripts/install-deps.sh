#!/usr/bin/env bash
# Installs the Debian 12 packages Tidemark builds and tests with. Idempotent: does nothing
# when everything is already present. Run as root (or with sudo available).
set -euo pipefail
PKGS=(build-essential cmake g++ ccache pkg-config git curl
      libgtest-dev libgmock-dev libbenchmark-dev
      nlohmann-json3-dev libcli11-dev libxxhash-dev libzstd-dev libjemalloc-dev
      libcurl4-openssl-dev libssl-dev
      python3 python3-dev python3-venv
      librdkafka-dev openjdk-17-jre-headless maven
      clang-14 libclang-rt-14-dev)  # clang + libFuzzer/sanitizer runtimes: scripts/fuzz.sh, scripts/sanitize.sh
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[install-deps] installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "[install-deps] all packages present"
fi
# The Azure emulator used by the tests comes from npm; install Node.js where it is missing.
if ! command -v npm >/dev/null 2>&1; then
  echo "[install-deps] installing nodejs and npm"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi
