#!/bin/sh
# Start sshd in the foreground, logging to stderr (docker logs), once the keys are in place.
set -eu
for f in /etc/ssh/keys/ssh_host_ed25519_key /etc/ssh/keys/authorized_keys/monetate; do
    if [ ! -s "$f" ]; then
        echo "sftp: $f is missing: the sftp-init service makes it (docker compose up sftp-init)" >&2
        exit 1
    fi
done
/usr/sbin/sshd -t
exec /usr/sbin/sshd -D -e
