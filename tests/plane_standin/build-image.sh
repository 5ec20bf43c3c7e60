#!/usr/bin/env bash
# Build the local image deployer-plane-standin:1 from server.py, WITHOUT any
# registry: the base is the testbed host image deployer-testbed-host:bookworm
# (built by tests/testbed/up.sh; Debian bookworm with python3 and curl).
#
# Idempotent: the sha256 of server.py (and of this recipe) is stored in the
# image label deployer.plane-standin.hash; when it matches, nothing is built.
#
#   tests/plane_standin/build-image.sh          # build if needed
#   FORCE=1 tests/plane_standin/build-image.sh  # rebuild anyway
#
# Run:  docker run -d -p 127.0.0.1:8000:8000 deployer-plane-standin:1
# Health: curl -fsS http://127.0.0.1:8000/   ->  {"status": "OK"}
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IMAGE=${PLANE_STANDIN_IMAGE:-deployer-plane-standin:1}
BASE=${PLANE_STANDIN_BASE:-deployer-testbed-host:bookworm}
RECIPE_VERSION=v1
LABEL=deployer.plane-standin.hash

log() { printf '[plane-standin] %s\n' "$*" >&2; }

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  log "base image $BASE is missing: run tests/testbed/up.sh first (it builds it without a registry)"
  exit 1
fi

HASH=$( { printf '%s\n' "$RECIPE_VERSION" "$BASE"; cat "$HERE/server.py"; } | sha256sum | cut -c1-16)
current=$(docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$IMAGE" 2>/dev/null || true)
if [[ $current == "$HASH" && -z ${FORCE:-} ]]; then
  log "image $IMAGE is up to date ($HASH)"
  exit 0
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$HERE/server.py" "$ctx/server.py"
cat >"$ctx/Dockerfile" <<EOF
FROM $BASE
COPY server.py /opt/plane-standin/server.py
RUN chmod 0644 /opt/plane-standin/server.py && python3 -c 'import ast,sys; ast.parse(open("/opt/plane-standin/server.py").read())'
ENV PYTHONUNBUFFERED=1 API_KEY_RATE_LIMIT=60/minute
EXPOSE 8000
LABEL $LABEL=$HASH
HEALTHCHECK --interval=30s --timeout=10s --retries=3 CMD curl -fsS http://127.0.0.1:8000/ || exit 1
USER nobody
CMD ["python3", "/opt/plane-standin/server.py", "--host", "0.0.0.0", "--port", "8000"]
EOF

start=$SECONDS
# The classic builder uses the local FROM image as is and never contacts a
# registry (BuildKit would try to resolve the base image remotely).
DOCKER_BUILDKIT=0 docker build --pull=false --network=none -q -t "$IMAGE" "$ctx" >/dev/null
log "built $IMAGE ($HASH) in $((SECONDS - start)) s"
