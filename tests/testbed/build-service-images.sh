#!/usr/bin/env bash
# Builds the testbed's stand-ins for the official postgres and redis images,
# WITHOUT any image registry: Debian bookworm's own packages (postgresql 15,
# redis-server 7.0) installed on the testbed host image
# deployer-testbed-host:bookworm (built by up.sh from a debootstrap rootfs).
# Needs Debian's package mirror from a build container (as up.sh needs it for
# debootstrap). Idempotent (content hash in an image label); safe to run
# concurrently (flock).
#
#   tests/testbed/build-service-images.sh    # -> deployer-postgresql:15-bookworm,
#                                             #    deployer-redis:7-bookworm
#
# They honour what roles/postgresql and roles/redis use of the official images:
# POSTGRES_USER/POSTGRES_PASSWORD/POSTGRES_DB and data under
# /var/lib/postgresql; pg_isready and psql on PATH; redis-server and redis-cli
# (REDISCLI_AUTH) with /data as the working directory.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BASE=deployer-testbed-host:bookworm
PG_IMAGE=${PG_IMAGE:-deployer-postgresql:15-bookworm}
REDIS_IMAGE=${REDIS_IMAGE:-deployer-redis:7-bookworm}
LABEL=deployer.testbed-service.hash
RECIPE_VERSION=v1

log() { printf '[service-images] %s\n' "$*" >&2; }

exec 9>/tmp/deployer-service-images.lock
flock 9

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  log "base image $BASE is missing: run tests/testbed/up.sh first"
  exit 1
fi
base_id=$(docker image inspect -f '{{.Id}}' "$BASE")

# build IMAGE [FILE...]: the Dockerfile comes from stdin, FILEs join the context.
build() {
  local image=$1
  shift
  local ctx
  ctx=$(mktemp -d)
  cat >"$ctx/Dockerfile"
  for f in "$@"; do cp "$f" "$ctx/"; done
  local hash
  hash=$({ printf '%s\n' "$RECIPE_VERSION" "$base_id"; cat "$ctx"/*; } | sha256sum | cut -c1-16)
  local current
  current=$(docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$image" 2>/dev/null || true)
  if [[ $current == "$hash" ]]; then
    log "$image is up to date"
    rm -rf "$ctx"
    return
  fi
  echo "LABEL $LABEL=$hash" >>"$ctx/Dockerfile"
  local start=$SECONDS
  # The classic builder uses the local FROM image and never asks a registry.
  if ! DOCKER_BUILDKIT=0 docker build --pull=false -q -t "$image" "$ctx" >"$ctx/build.log" 2>&1; then
    tail -n 30 "$ctx/build.log" >&2
    rm -rf "$ctx"
    log "building $image failed"
    exit 1
  fi
  rm -rf "$ctx"
  log "built $image in $((SECONDS - start)) s"
}

build "$PG_IMAGE" "$HERE/services/postgresql-entrypoint.sh" <<DOCKERFILE
FROM $BASE
# No cluster at install time: the entrypoint makes one in the volume.
RUN mkdir -p /etc/postgresql-common \
 && echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.conf \
 && apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
COPY postgresql-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 0755 /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/15/docker
STOPSIGNAL SIGINT
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD []
DOCKERFILE

build "$REDIS_IMAGE" <<DOCKERFILE
FROM $BASE
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && mkdir -p /data
WORKDIR /data
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]
DOCKERFILE
