#!/usr/bin/env bash
# 100 testbed hosts: deployer's first apply, no-op re-run and check of the
# benchmark role (bench/site.yml), wall time and peak RSS (/usr/bin/time -v),
# the most ssh processes and deployer file descriptors open at once.
# Usage: TESTBED_ID=bh TESTBED_PORT_BASE=3000 bench/hundred.sh [N=100] [FORKS=20]
# Brings the testbed up with N hosts (tests/testbed/up.sh N) and leaves it up.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=${1:-100}
FORKS=${2:-20}
BIN=${DEPLOYER_BIN:-target/release/deployer}
[[ -x $BIN ]] || cargo build --release
up_start=$SECONDS
tests/testbed/up.sh "$N" >&2
echo "testbed of $N hosts up in $((SECONDS - up_start)) s" >&2
INV=tests/testbed/inventory.yml
ROOT=/srv/bench-hundred
ssh_cfg=tests/testbed/state/ssh_config
clean() {
  for i in $(seq 1 "$N"); do
    ssh -F "$ssh_cfg" "root@tb$i" "rm -rf $ROOT /var/lib/deployer/$(basename "$PWD")" &
    if (( i % 20 == 0 )); then wait; fi
  done
  wait
}
# The most ssh processes of this checkout (masters and clients: their working
# directory is this one) and open file descriptors of deployer seen at once,
# sampled every 0.2 s while `pid` (the /usr/bin/time wrapper) runs.
sample() { # pid -> "max_ssh max_fds"
  local pid=$1 max_ssh=0 max_fd=0 n d p
  while kill -0 "$pid" 2>/dev/null; do
    n=0
    for p in $(pgrep -x ssh || true); do
      [[ $(readlink "/proc/$p/cwd" 2>/dev/null) == "$PWD" ]] && n=$((n + 1))
    done
    ((n > max_ssh)) && max_ssh=$n
    d=$(pgrep -P "$pid" -x deployer | head -n 1 || true)
    if [[ -n $d ]]; then
      n=$(find "/proc/$d/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
      ((n > max_fd)) && max_fd=$n
    fi
    sleep 0.2
  done
  echo "$max_ssh $max_fd"
}
measure() { # label, deployer args...
  local label=$1
  shift
  local out
  out=$(mktemp)
  /usr/bin/time -v "$BIN" "$@" --format json >"$out.stdout" 2>"$out" &
  local tpid=$!
  local peaks
  peaks=$(sample "$tpid")
  wait "$tpid" || true
  local wall rss code
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$out")
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$out")
  code=$(sed -n 's/.*Exit status: //p' "$out")
  local recap
  recap=$(grep '"event":"recap"' "$out.stdout" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())["hosts"]
k = lambda key: sum(h[key] for h in r.values())
print("hosts=%d changed=%d failed=%d unreachable=%d remote_executions=%d" % (len(r), k("changed"), k("failed"), k("unreachable"), k("remote_executions")))
' 2>/dev/null || echo "no recap")
  read -r max_ssh max_fd <<<"$peaks"
  printf '| %s | %s | %s | %.1f MB | %s | %s | exit %s | %s |\n' "$N" "$label" "$wall" "$(echo "$rss / 1024" | bc -l)" "$max_ssh" "$max_fd" "$code" "$recap"
  if [[ $code != 0 && $code != 2 ]]; then
    # What failed, for the record (secrets are masked by deployer itself).
    grep -v '^\s' "$out" | grep -v 'Command being timed' | head -n 20 >&2 || true
    grep '"status":"failed"\|"unreachable"' "$out.stdout" | head -n 5 >&2 || true
  fi
  rm -f "$out" "$out.stdout"
}
clean
echo "| hosts | run | wall (m:ss) | deployer peak RSS | ssh processes at once | deployer open fds | exit | recap |"
echo "|---|---|---|---|---|---|---|---|"
measure "check (clean hosts)" check -i "$INV" bench/site.yml -f "$FORKS" -e bench_root=$ROOT
measure "first apply" apply -i "$INV" bench/site.yml -f "$FORKS" -e bench_root=$ROOT
measure "no-op re-run" apply -i "$INV" bench/site.yml -f "$FORKS" -e bench_root=$ROOT
measure "check (converged)" check -i "$INV" bench/site.yml -f "$FORKS" -e bench_root=$ROOT
clean
