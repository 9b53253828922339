#!/usr/bin/env bash
# Makes sure the system tools Sluice's tests and sandbox use are present:
#   prometheus (Debian package "prometheus"), kubectl (Debian package "kubernetes-client"
#   when no kubectl is on PATH) and chromium (headless, for the dashboard's browser test).
#   Installs them with apt-get when it can; otherwise says what to install.
set -euo pipefail

missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "sluice setup: missing system packages: ${missing[*]}" >&2
    echo "  install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "sluice setup: missing ${missing[*]} and apt-get is not available;" >&2
  echo "  install Prometheus (https://prometheus.io/download/), kubectl and Chromium, then re-run make setup" >&2
  exit 1
fi

echo "sluice setup: installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for tool in prometheus kubectl chromium; do
  command -v "$tool" >/dev/null 2>&1 || { echo "sluice setup: $tool still missing after install" >&2; exit 1; }
done
