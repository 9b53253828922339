#!/usr/bin/env bash
# Creates what a user of standalone mode already has before Sluice is involved: two APISIX
# upstreams, `podinfo-stable` (the container podinfo-blue of the compose profile `apisix`) and
# `podinfo-canary` (podinfo-green), by the containers' fixed addresses (APISIX's `node` metric
# label is the address it dialled, and Sluice's builtin checks tell the canary's requests by
# it), and the route `podinfo` (every path, to podinfo-stable, with the prometheus plugin so
# the gateway exports its requests under route="podinfo"). Idempotent: PUT with fixed ids.
# Running it again puts the route and upstreams back as they were, traffic-split included:
# not while a rollout is in progress.
#
#   deploy/compose/apisix/setup.sh            # against http://127.0.0.1:9180 (the compose port)
#   APISIX_ADMIN_URL=http://apisix.internal:9180 APISIX_ADMIN_KEY_FILE=key deploy/compose/apisix/setup.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
admin_url="${APISIX_ADMIN_URL:-http://127.0.0.1:9180}"
key_file="${APISIX_ADMIN_KEY_FILE:-$here/admin-key}"
if [[ ! -r "$key_file" ]]; then
    echo "setup: cannot read the Admin API key at $key_file (APISIX_ADMIN_KEY_FILE)" >&2
    exit 1
fi
key="$(tr -d '[:space:]' <"$key_file")"
stable_node="${PODINFO_STABLE_NODE:-10.213.42.10:9898}"
canary_node="${PODINFO_CANARY_NODE:-10.213.42.11:9898}"

# put PATH BODY: one Admin API write; fails loudly with APISIX's answer
put() {
    local path="$1" body="$2" answer
    if ! answer="$(curl -sS --fail-with-body --max-time 10 -X PUT \
        -H "X-API-KEY: $key" -H "Content-Type: application/json" \
        --data "$body" "$admin_url/apisix/admin/$path")"; then
        echo "setup: PUT $admin_url/apisix/admin/$path failed: $answer" >&2
        exit 1
    fi
    echo "setup: PUT /apisix/admin/$path"
}

put upstreams/podinfo-stable '{
  "name": "podinfo-stable",
  "type": "roundrobin",
  "nodes": {"'"$stable_node"'": 1}
}'
put upstreams/podinfo-canary '{
  "name": "podinfo-canary",
  "type": "roundrobin",
  "nodes": {"'"$canary_node"'": 1}
}'
# The prometheus plugin without prefer_name: the `route` label of apisix_http_status and
# apisix_http_latency is the route id, which is what Sluice's builtin metrics select on.
put routes/podinfo '{
  "name": "podinfo",
  "uri": "/*",
  "upstream_id": "podinfo-stable",
  "plugins": {"prometheus": {}}
}'
