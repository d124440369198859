#!/usr/bin/env bash
# The end-to-end tests in two lanes that run side by side, one file at a time in each:
#   npm run test:e2e:stacks   files that boot several guests at once (stacks)
#   npm run test:e2e:single   files that boot one guest at a time, or only paused ones
# A guest under TCG keeps a core busy while it boots. Two stack files together put six or seven
# booting guests on CI's two cores, where first boots then took over eight minutes; the lanes
# bound the load to one stack plus one guest, and keep the rest of the overlap. The single lane
# prints when it ends, after the stacks lane's live output, so the two never interleave.
# Exits non-zero when either lane failed.
set -uo pipefail
cd "$(dirname "$0")/.."

single_out=$(mktemp "${TMPDIR:-/tmp}/holos-e2e-single.XXXXXX")
trap 'rm -f "$single_out"' EXIT

npm run --silent test:e2e:single >"$single_out" 2>&1 &
single_pid=$!
npm run --silent test:e2e:stacks
stacks=$?
wait "$single_pid"
single=$?

echo "# --- lane single (one guest at a time), exit status $single ---"
cat "$single_out"
echo "# --- lanes: stacks exited $stacks, single exited $single ---"
((stacks == 0 && single == 0))
