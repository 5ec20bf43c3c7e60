#!/usr/bin/env bash
# Remove the testbed hosts made by up.sh and up-systemd.sh (plain and --db) and the files they wrote.
#   down.sh        containers + tests/testbed/state/* + tests/testbed/inventory*.yml
#   down.sh --all  also the images deployer-testbed-host:bookworm(-systemd, -db) and the cached
#                  rootfs tarball in /var/cache/deployer-testbed (next up.sh rebuilds)
# dockerd itself is left running.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=$HERE/state
IMAGE=deployer-testbed-host:bookworm
SYSTEMD_IMAGE=deployer-testbed-host:bookworm-systemd
DB_IMAGE=deployer-testbed-host:bookworm-db
CACHE=/var/cache/deployer-testbed
LABEL=deployer-testbed

all=
case ${1:-} in
  '') ;;
  --all) all=1 ;;
  *)
    echo "usage: $0 [--all]" >&2
    exit 2
    ;;
esac

if docker info >/dev/null 2>&1; then
  if [[ -n $all ]]; then
    ids=$(docker ps -aq --filter "label=$LABEL")
  else
    ids=$(docker ps -aq --filter "label=$LABEL=${TESTBED_ID:-tb}")
  fi
  if [[ -n $ids ]]; then
    # shellcheck disable=SC2086  # one id per word
    docker rm -f $ids >/dev/null
    echo "[down] removed testbed hosts" >&2
  fi
  if [[ -n $all ]] && docker image inspect "$DB_IMAGE" >/dev/null 2>&1; then
    docker rmi "$DB_IMAGE" >/dev/null
    echo "[down] removed image $DB_IMAGE" >&2
  fi
  if [[ -n $all ]] && docker image inspect "$SYSTEMD_IMAGE" >/dev/null 2>&1; then
    docker rmi "$SYSTEMD_IMAGE" >/dev/null
    echo "[down] removed image $SYSTEMD_IMAGE" >&2
  fi
  if [[ -n $all ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    docker rmi "$IMAGE" >/dev/null
    echo "[down] removed image $IMAGE" >&2
  fi
else
  echo "[down] docker engine not reachable; no containers to remove" >&2
fi

rm -f "$STATE"/id_ed25519 "$STATE"/id_ed25519.pub "$STATE"/known_hosts \
  "$STATE"/known_hosts.tmp "$STATE"/ssh_config "$HERE/inventory.yml" \
  "$HERE/inventory-systemd.yml" "$HERE/inventory-db.yml"
rm -rf "$STATE"/systemd "$STATE"/db
rmdir "$STATE" 2>/dev/null || true

if [[ -n $all ]]; then
  rm -rf "$CACHE"
  echo "[down] removed $CACHE" >&2
fi
