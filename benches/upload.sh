#!/usr/bin/env bash
# Issue 3's benchmark: peak RSS while uploading 200 MB against 50 MB.
# Usage: benches/upload.sh [--rounds N]
# Writes benches/results/upload.{md,json}. Takes about 1 minute.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_need curl curl

bench_build
exec python3 "$repo/benches/upload.py" "$@"
