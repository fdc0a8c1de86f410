#!/usr/bin/env bash
# Resident memory after bursts of logins, with glibc's default allocator
# settings and two variants. Usage: benches/login_memory.sh [--bursts N]
# Writes benches/results/login_memory.md. Takes about 2 minutes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_need wrk wrk
bench_build
exec python3 "$repo/benches/login_memory.py" "$@"
