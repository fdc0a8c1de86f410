#!/usr/bin/env bash
# Where a /chat turn's time goes, kernel included, with perf.
#
# Usage: benches/perf.sh [--seconds S] [--concurrency C]
# Writes benches/results/perf-chat.txt. Builds magdi with symbols into
# CARGO_TARGET_DIR_PROFILE (default /work/target-prof), as callgrind.sh does.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_need perf linux-perf
bench_need wrk wrk
bench_build
profile_dir="${CARGO_TARGET_DIR_PROFILE:-/work/target-prof}"
if [[ "${MAGDI_BENCH_NO_BUILD:-0}" != 1 ]]; then
  (cd "${MAGDI_BENCH_SRC:-$repo}" && CARGO_TARGET_DIR="$profile_dir" \
    CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
    cargo build --release -p magdi)
fi
exec python3 "$repo/benches/perf.py" --magdi "$profile_dir/release/magdi" "$@"
