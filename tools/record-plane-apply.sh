#!/usr/bin/env bash
# Records what a person at a terminal sees during the Plane testbed apply
# (`apply playbooks/site.yml --tags plane` on tb1, as tests/plane_stack.rs
# runs it): deployer runs in a real tmux pane; the pane is captured every
# 0.5 s, and each new status line ("running: [tb1] <task> <n>s: <step>") is
# kept with the time it was seen, then the whole pane at the end.
#
#   TESTBED_ID=<id> tools/record-plane-apply.sh [OUT] [DEPLOYER_BIN]
#
# Needs the testbed up (tests/testbed/up.sh 1) and the local images
# (tests/testbed/build-test-image.sh, tests/plane_standin/build-image.sh,
# tests/testbed/build-service-images.sh). Works on a copy of the project (the
# hook writes tokens into the copy's vault) and removes the stack afterwards.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$ROOT/docs/terminal/plane-apply.txt}
BIN=$(realpath "${2:-$ROOT/target/release/deployer}")
ID=${TESTBED_ID:-tb}
PREFIX=$ID-deployer-plane-rec
SESSION=deployer-record-$ID-$$

cleanup() {
  tmux kill-session -t "$SESSION" 2>/dev/null || true
  for stack in plane postgresql redis; do
    docker ps -aq --filter "label=com.docker.compose.project=$PREFIX-$stack" | xargs -r docker rm -f >/dev/null
  done
  for v in postgresql_data redis_data; do docker volume rm "${PREFIX}_$v" >/dev/null 2>&1 || true; done
  TESTBED_ID=$ID "$ROOT/tests/testbed/plane-networks.sh" down "$PREFIX" >/dev/null 2>&1 || true
  docker exec "deployer-${ID}1" rm -rf "/srv/$PREFIX" 2>/dev/null || true
  if [ -n "${WORK:-}" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
cleanup
TESTBED_ID=$ID "$ROOT/tests/testbed/plane-networks.sh" up "$PREFIX" >/dev/null

WORK=$(mktemp -d)
cp -r "$ROOT/inventory" "$ROOT/roles" "$ROOT/playbooks" "$WORK/"
cp "$ROOT/tests/testbed/inventory.yml" "$WORK/inventory/testbed.yml"
CMD="$BIN apply -i inventory/testbed.yml playbooks/site.yml --tags plane \
-e @$ROOT/tests/fixtures/plane-testbed-vars.yml -e plane_testbed_prefix=$PREFIX \
--vault-password-file $ROOT/tests/fixtures/vault-password.txt"
tmux new-session -d -s "$SESSION" -x 160 -y 50 -c "$WORK" \
  "$CMD; echo EXIT=\$?; sleep 600"
tmux set-option -t "$SESSION" history-limit 5000 >/dev/null

start=$(date +%s.%N)
lines=$(mktemp)
last=""
kept=0
while :; do
  pane=$(tmux capture-pane -p -t "$SESSION")
  status=$(printf '%s\n' "$pane" | grep -E '^running: ' | tail -1 || true)
  # Kept when its text changed other than in its numbers, or every 5 s.
  key=$(printf '%s' "$status" | tr -d '0-9')
  now=$(date +%s)
  if [ -n "$status" ] && { [ "$key" != "$last" ] || [ $((now - kept)) -ge 5 ]; }; then
    printf '%6.1fs  %s\n' "$(echo "$(date +%s.%N) - $start" | bc)" "$status" >>"$lines"
    last=$key
    kept=$now
  fi
  printf '%s\n' "$pane" | grep -q '^EXIT=' && break
  sleep 0.5
done
{
  echo "# The Plane testbed apply in a terminal (tmux $(tmux -V | cut -d' ' -f2), 160x50), recorded by"
  echo "# tools/record-plane-apply.sh on $(date -u '+%Y-%m-%d %H:%M UTC'), deployer $("$BIN" --version | head -1)."
  echo "# Command (in a copy of the project): deployer apply -i inventory/testbed.yml playbooks/site.yml"
  echo "#   --tags plane -e @tests/fixtures/plane-testbed-vars.yml -e plane_testbed_prefix=$PREFIX"
  echo "#   --vault-password-file tests/fixtures/vault-password.txt"
  echo
  echo "## The status line (stderr, redrawn once a second, erased before each result line), each new text as captured every 0.5 s"
  echo "## (kept when the text changed other than in its numbers, else every 5 s)"
  echo
  cat "$lines"
  echo
  echo "## The pane at the end (tmux capture-pane -S -)"
  echo
  tmux capture-pane -p -S - -t "$SESSION" | sed -e 's/[[:space:]]*$//' | awk 'NF || p {print; p=NF}'
} >"$OUT"
rm -f "$lines"
echo "recorded to $OUT" >&2
