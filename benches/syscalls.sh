#!/usr/bin/env bash
# CPU time, context switches and system calls per /chat turn (perf stat, strace).
# Usage: benches/syscalls.sh. Writes benches/results/syscalls.md. Takes about 1 minute.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_need wrk wrk
bench_need strace strace
bench_need perf linux-perf
bench_build
exec python3 "$repo/benches/syscalls.py" "$@"
