#!/bin/sh
# Starts nats-server in the compose stack with the shipped authorization (deploy/nats/): the
# server's configuration reads each user's password from its environment
# ($SLUICE_WATCHER_PASSWORD ...), and compose mounts the passwords as one file per user
# (deploy/compose/nats/passwords/<user> at /etc/nats/passwords, or NATS_PASSWORDS_DIR). This
# exports one variable per file, then replaces itself with nats-server and its arguments.
set -eu

dir="${NATS_PASSWORDS_DIR:-/etc/nats/passwords}"

for user in watcher analyzer traffic-shifter webhook-runner notifier \
    operator release-bot viewer integration admin; do
    file="$dir/$user"
    if [ ! -r "$file" ]; then
        echo "nats: cannot read the password of user $user at $file" >&2
        exit 1
    fi
    var="SLUICE_$(echo "$user" | tr 'a-z-' 'A-Z_')_PASSWORD"
    export "$var=$(cat "$file")"
done

exec nats-server "$@"
