#!/usr/bin/env bash
# What `make stack-test` needs of the host, made ready where it can be (CI runs this as root on a
# fresh machine, before `make stack-test`):
#   - a container engine with the images docker-compose.yaml names (python, debian, postgres,
#     redis, mysql): present, or pulled; where no registry answers and ../shared/containers is
#     beside the clone, its build-standins.sh builds local stand-ins (podman, docker-compose v1)
#   - on podman without systemd: its API socket and the health-check runner (build-standins.sh
#     starts both); on podman's CNI network backend: the dnsname plugin, without which the
#     services cannot find one another by name (`could not translate host name "postgres"`)
# Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGES=(python:3.11-slim-bookworm debian:bookworm-slim postgres:16 redis:7.2-bookworm mysql:8.4)
STANDINS=../shared/containers/build-standins.sh
say() { printf 'stack-test-host: %s\n' "$*"; }

engine() {
	if command -v podman >/dev/null; then echo podman; elif command -v docker >/dev/null; then echo docker; fi
}
answers() { local e; e=$(engine); [ -n "$e" ] && "$e" info >/dev/null 2>&1; }
have_images() {
	local e i; e=$(engine)
	for i in "${IMAGES[@]}"; do "$e" image inspect "$i" >/dev/null 2>&1 || return 1; done
}
pull_images() {
	local e i; e=$(engine)
	for i in "${IMAGES[@]}"; do
		"$e" image inspect "$i" >/dev/null 2>&1 || timeout 300 "$e" pull -q "$i" >/dev/null 2>&1 || return 1
	done
}
no_systemd() { [ "$(ps -p 1 -o comm= 2>/dev/null)" != systemd ]; }
runner_alive() { [ -f /run/podman-healthcheck-runner.pid ] && kill -0 "$(cat /run/podman-healthcheck-runner.pid)" 2>/dev/null; }

if answers && have_images; then
	say "$(engine) answers and has the images"
elif answers && pull_images; then
	say "pulled the images"
elif [ -f "$STANDINS" ]; then
	say "no registry: building the local stand-ins with $STANDINS (2-3 minutes the first time)"
	bash "$STANDINS"
else
	say "no container engine with the images, and no ../shared/containers to build stand-ins:"
	say "install Docker (with Compose v2) or podman and docker-compose, and pull ${IMAGES[*]}"
	exit 1
fi

if [ "$(engine)" = podman ]; then
	if no_systemd && ! runner_alive && [ -f "$STANDINS" ]; then
		say "starting podman's API socket and health-check runner"
		bash "$STANDINS" services
	fi
	if [ "$(podman info --format '{{.Host.NetworkBackend}}')" = cni ] && [ ! -x /usr/lib/cni/dnsname ]; then
		say "installing the CNI dnsname plugin (service names must resolve inside the stack)"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			golang-github-containernetworking-plugin-dnsname >/dev/null
	fi
fi
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
	say "no compose front-end: install Docker Compose v2, or docker-compose (Debian) for podman"
	exit 1
fi
say "ready"
