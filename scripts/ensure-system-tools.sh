#!/usr/bin/env bash
# Makes sure the system tools Sluice's tests and sandbox use are present:
#   prometheus (Debian package "prometheus") and kubectl (Debian package "kubernetes-client"
#   when no kubectl is on PATH). Installs them with apt-get when it can; otherwise says what to install.
set -euo pipefail

missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)

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
  echo "  install Prometheus (https://prometheus.io/download/) and kubectl, then re-run make setup" >&2
  exit 1
fi

echo "sluice setup: installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for tool in prometheus kubectl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "sluice setup: $tool still missing after install" >&2; exit 1; }
done
