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
magdi="$(bench_build_profile)"
exec python3 "$repo/benches/callgrind.py" --magdi "$magdi" "$@"
