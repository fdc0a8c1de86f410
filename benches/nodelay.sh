#!/usr/bin/env bash
# Streamed chat through the bare proxy with poem's default listener (Nagle on)
# against TCP_NODELAY. Usage: benches/nodelay.sh [--rounds N] [--seconds S]
# Writes benches/results/nodelay.md. Takes about 1 minute.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_need wrk wrk
bench_build
exec python3 "$repo/benches/nodelay.py" "$@"
