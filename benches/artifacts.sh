#!/usr/bin/env bash
# Issue 4's benchmark: building the ZIP of a 5,000-file 500 MiB workspace
# against zip -r on the same folder, download throughput and RSS during downloads.
# Usage: benches/artifacts.sh [--rounds N]
# Writes benches/results/artifacts.{md,json}. Takes about 4 minutes and 2 GB of disk.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_need curl curl
bench_need zip zip
bench_build
exec python3 "$repo/benches/artifacts.py" "$@"
