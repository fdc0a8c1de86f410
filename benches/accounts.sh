#!/usr/bin/env bash
# Issue 2's benchmark: start-up time, idle RSS, /version throughput, login
# throughput, and /version p99 while logins keep the cores busy.
#
# Usage: benches/accounts.sh [--rounds N] [--seconds S]
# Writes benches/results/accounts.{md,json}. Takes about 3 minutes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_need wrk wrk
bench_build
exec python3 "$repo/benches/accounts.py" "$@"
