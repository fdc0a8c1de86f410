#!/usr/bin/env bash
# Issue 5's benchmark: /chat throughput with the allowance on against off,
# and /metrics scrape time with 10,000 conversations in the database.
# Usage: benches/allowance.sh [--rounds N] [--seconds S]
# Writes benches/results/allowance.{md,json}. Takes about 3 minutes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_need curl curl
bench_need wrk wrk
bench_build
exec python3 "$repo/benches/allowance.py" "$@"
