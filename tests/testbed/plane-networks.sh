#!/usr/bin/env bash
# The testbed side of what the Plane project expects of its server.
#
# 1. The three Docker networks exist before the stacks (seed 004, "Réseaux
#    Docker (Existants)"; docker_networks_external: true): <PREFIX>_frontend,
#    <PREFIX>_backend (internal) and <PREFIX>_egress.
# 2. The host has an address on the backend network. On a real server the
#    host's own network namespace holds every bridge network's gateway, so its
#    sshd reaches a container's address (also on an `internal` network: checked
#    on Debian 12 with Docker 20.10). A testbed host is itself a container on
#    the default bridge, and Docker's bridge isolation drops its packets to
#    other bridges; connecting it to the backend network gives it the address a
#    real host already has. plane_users reaches the api through exactly that:
#    an SSH port forward, from the host, to the api container's backend address.
#
#   TESTBED_ID=tbp tests/testbed/plane-networks.sh up   [PREFIX]
#   TESTBED_ID=tbp tests/testbed/plane-networks.sh down [PREFIX]
# PREFIX defaults to deployer-plane-tb (plane_testbed_prefix in
# tests/fixtures/plane-testbed-vars.yml). The host is deployer-<TESTBED_ID>1 (tb1).
set -euo pipefail

ACTION=${1:-}
PREFIX=${2:-deployer-plane-tb}
HOST=deployer-${TESTBED_ID:-tb}1

case $ACTION in
up)
  for net in frontend backend egress; do
    name=${PREFIX}_$net
    if ! docker network inspect "$name" >/dev/null 2>&1; then
      if [[ $net == backend ]]; then
        docker network create --internal "$name" >/dev/null
      else
        docker network create "$name" >/dev/null
      fi
    fi
  done
  connected=$(docker inspect -f "{{ if index .NetworkSettings.Networks \"${PREFIX}_backend\" }}yes{{ end }}" "$HOST")
  if [[ $connected != yes ]]; then
    docker network connect "${PREFIX}_backend" "$HOST"
  fi
  ;;
down)
  docker network disconnect -f "${PREFIX}_backend" "$HOST" >/dev/null 2>&1 || true
  for net in frontend backend egress; do
    docker network rm "${PREFIX}_$net" >/dev/null 2>&1 || true
  done
  ;;
*)
  echo "usage: $0 up|down [PREFIX]" >&2
  exit 2
  ;;
esac
