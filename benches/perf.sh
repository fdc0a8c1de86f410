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
magdi="$(bench_build_profile)"
exec python3 "$repo/benches/perf.py" --magdi "$magdi" "$@"
