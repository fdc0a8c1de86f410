#!/usr/bin/env bash
# Issue 9's harness: magdi's /chat against the fake provider alone, the bare
# proxy (with and without its SQLite row) and, with --with-litellm, LiteLLM's
# proxy, at concurrency 1 and 32, non-streamed and streamed, all on 127.0.0.1.
#
# Usage: benches/gateway.sh [--with-litellm] [--rounds N] [--seconds S]
# Writes benches/results/gateway.{md,json,png}. Takes about 12 minutes with
# LiteLLM at the defaults (3 rounds of 10 s), about 9 without.
# Env: CARGO_TARGET_DIR (default /work/target-bench), MAGDI_BENCH_VENV,
#      MAGDI_BENCH_NO_BUILD=1 to reuse the binaries already built.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

bench_need wrk wrk
bench_need taskset util-linux
bench_build

extra=()
for arg in "$@"; do
  [[ "$arg" == --with-litellm ]] && extra=('litellm[proxy]')
done
python="$(bench_python "${extra[@]}")"
export LITELLM_BIN="$bench_venv/bin/litellm"
exec "$python" "$repo/benches/gateway.py" "$@"
