#!/bin/bash
# Starts APISIX in the compose profile `apisix`: its Admin API key comes from a file (compose
# mounts deploy/compose/apisix/admin-key at /run/secrets/apisix-admin-key, the file the Sluice
# services read through SLUICE_APISIX_ADMIN_KEY_FILE), and config.yaml takes it from the
# environment (${{APISIX_ADMIN_KEY}}). Then the image's own entrypoint starts the gateway.
set -euo pipefail

key_file="${APISIX_ADMIN_KEY_FILE:-/run/secrets/apisix-admin-key}"
if [[ ! -r "$key_file" ]]; then
    echo "apisix: cannot read the Admin API key at $key_file" >&2
    exit 1
fi
APISIX_ADMIN_KEY="$(tr -d '[:space:]' <"$key_file")"
if [[ -z "$APISIX_ADMIN_KEY" ]]; then
    echo "apisix: the Admin API key file $key_file is empty" >&2
    exit 1
fi
export APISIX_ADMIN_KEY

exec /docker-entrypoint.sh docker-start
