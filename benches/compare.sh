#!/usr/bin/env bash
# Two or more magdi builds against each other, alternating (see compare.py).
# Usage: benches/compare.sh BINARY BINARY [...]. Builds the fake provider only.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_need wrk wrk
if [[ "${MAGDI_BENCH_NO_BUILD:-0}" != 1 ]]; then
  (cd "$repo" && cargo build --release -p magdi-bench)
fi
exec python3 "$repo/benches/compare.py" "$@"
