#!/usr/bin/env bash
# The standalone-mode walk-through (docs/standalone.md) against the compose profile `apisix`:
# a real APISIX, two podinfo containers and Sluice's five services, no Kubernetes.
#
#   scripts/standalone-walkthrough.sh             # up, a good rollout, a faulty one, down
#   KEEP_STACK=1 scripts/standalone-walkthrough.sh   # leave the stack running at the end
#
# Needs Docker with the compose plugin (or docker-compose, or podman compose), curl, and the
# `sluice` CLI (make setup puts it in .venv/bin). Each step prints what it runs.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
elif podman compose version >/dev/null 2>&1; then
    compose=(podman compose)
else
    echo "walkthrough: no container engine found (docker compose, docker-compose or podman compose); without one: make demo-standalone" >&2
    exit 1
fi
if [[ -x "$root/.venv/bin/sluice" ]]; then
    sluice="$root/.venv/bin/sluice"
elif command -v sluice >/dev/null 2>&1; then
    sluice="$(command -v sluice)"
else
    echo "walkthrough: the sluice CLI is not installed (make setup)" >&2
    exit 1
fi
command -v curl >/dev/null 2>&1 || { echo "walkthrough: curl is not installed" >&2; exit 1; }

infrastructure=(nats prometheus etcd apisix podinfo-blue podinfo-green)
sluice_services=(standalone-watcher standalone-analyzer standalone-traffic-shifter
    standalone-webhook-runner standalone-notifier)
admin_url="http://127.0.0.1:9180"
admin_key="$(tr -d '[:space:]' <deploy/compose/apisix/admin-key)"
canary_file=deploy/compose/apisix/canaries/podinfo.yaml

# The CLI on the host logs in to the compose NATS as the `operator` user.
export NATS_URL="nats://127.0.0.1:4222"
export NATS_USER=operator
NATS_PASSWORD="$(tr -d '[:space:]' <deploy/compose/nats/passwords/operator)"
export NATS_PASSWORD
export SLUICE_MODE=standalone

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

down() {
    if [[ "${KEEP_STACK:-0}" == "1" ]]; then
        echo "walkthrough: the stack keeps running; stop it with: ${compose[*]} --profile apisix down -v"
    else
        step "down"
        run "${compose[@]}" --profile apisix down -v
    fi
}
on_exit() {
    local status=$?
    if [[ $status -ne 0 ]]; then
        echo "walkthrough: failed (exit $status); the services' logs: ${compose[*]} --profile apisix logs" >&2
    fi
    down
}
trap on_exit EXIT

# the route as APISIX holds it now (the plugins show what Sluice changed)
show_route() {
    curl -sS --max-time 10 -H "X-API-KEY: $admin_key" "$admin_url/apisix/admin/routes/podinfo"
    echo
}

step "up: NATS, Prometheus, etcd, APISIX and two podinfo instances (blue 6.7.0, green 6.7.1)"
run "${compose[@]}" --profile apisix up -d --wait "${infrastructure[@]}"

step "the user's route podinfo, upstreams podinfo-stable (blue) and podinfo-canary (green)"
run deploy/compose/apisix/setup.sh
run curl -sS --max-time 10 http://127.0.0.1:9080/
echo

step "Sluice's five services in standalone mode"
run "${compose[@]}" --profile apisix up -d --build --wait "${sluice_services[@]}"

step "apply the canary (the watcher also applies every file in deploy/compose/apisix/canaries/)"
run "$sluice" apply -f "$canary_file"
run "$sluice" watch podinfo -n default --timeout 2m
run "$sluice" get canaries
show_route

step "a good rollout: podinfo 6.7.1 runs behind podinfo-canary (green)"
run "$sluice" rollout start podinfo --revision 6.7.1
run "$sluice" watch podinfo -n default --timeout 10m
run "$sluice" get canaries
show_route

step "a faulty rollout: the next version goes to the idle instance, and fails a third of its requests"
# The promotion pointed podinfo-stable at green; blue is idle. Deploy the next version there
# (here: blue with random errors) and point the canary upstream at it.
PODINFO_BLUE_RANDOM_ERROR=true run "${compose[@]}" --profile apisix up -d --wait podinfo-blue
# (a PATCH of the sub-path replaces the nodes whole; one of the upstream would merge them)
run curl -sS --fail-with-body --max-time 10 -X PATCH -H "X-API-KEY: $admin_key" \
    --data '{"10.213.42.10:9898": 1}' "$admin_url/apisix/admin/upstreams/podinfo-canary/nodes"
echo
run "$sluice" rollout start podinfo --revision 6.7.0-random-errors
status=0
run "$sluice" watch podinfo -n default --timeout 10m || status=$?
if [[ $status -ne 1 ]]; then
    echo "walkthrough: expected the faulty rollout to fail (exit 1), sluice watch exited $status" >&2
    exit 1
fi
echo "the faulty rollout was rolled back: podinfo-stable (green) serves everything again"
run "$sluice" get canaries
show_route
run "${compose[@]}" --profile apisix up -d --wait podinfo-blue

step "delete the canary: the route is given back as it was"
run "$sluice" delete canary podinfo
show_route
