#!/usr/bin/env bash
# Where a /chat turn's instructions go: magdi, built with symbols, under
# valgrind's callgrind for a fixed number of turns.
#
# Usage: benches/callgrind.sh [--turns N] [--stream]
# Writes benches/results/callgrind-chat{,-stream}.{txt,json}. The build with
# symbols goes to CARGO_TARGET_DIR_PROFILE (default /work/target-prof), the
# run takes about 2 minutes for 200 turns.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_need valgrind valgrind
bench_build
profile_dir="${CARGO_TARGET_DIR_PROFILE:-/work/target-prof}"
if [[ "${MAGDI_BENCH_NO_BUILD:-0}" != 1 ]]; then
  (cd "${MAGDI_BENCH_SRC:-$repo}" && CARGO_TARGET_DIR="$profile_dir" \
    CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
    cargo build --release -p magdi)
fi
exec python3 "$repo/benches/callgrind.py" --magdi "$profile_dir/release/magdi" "$@"
