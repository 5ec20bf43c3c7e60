#!/usr/bin/env bash
# Builds the tiny image the compose tests deploy (no registry needed):
# Debian's static busybox plus its applet symlinks (sh, httpd, wget, sleep...),
# and /www/health for an HTTP health endpoint. Idempotent and safe to run
# concurrently (flock). Usage: build-test-image.sh [IMAGE] (default deployer-test-busybox:1)
set -euo pipefail
IMAGE=${1:-deployer-test-busybox:1}
exec 9>/tmp/deployer-test-image.lock
flock 9
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  exit 0
fi
if [[ ! -x /bin/busybox ]]; then
  apt-get install -y -q busybox-static >/dev/null
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/bin" "$dir/tmp" "$dir/www" "$dir/etc"
cp /bin/busybox "$dir/bin/busybox"
for applet in $(/bin/busybox --list); do
  [[ $applet == busybox ]] || ln -s busybox "$dir/bin/$applet"
done
echo ok >"$dir/www/health"
echo 'root:x:0:0:root:/:/bin/sh' >"$dir/etc/passwd"
echo 'root:x:0:' >"$dir/etc/group"
tar -C "$dir" -c . | docker import --change 'ENV PATH=/bin' --change 'CMD ["sh"]' - "$IMAGE" >/dev/null
echo "built $IMAGE" >&2
