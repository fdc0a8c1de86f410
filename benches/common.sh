# Sourced by the benchmark scripts: builds the release binaries once into
# CARGO_TARGET_DIR (default /work/target-bench) and makes the virtual environment with matplotlib (and,
# when asked, LiteLLM's proxy) outside the repository.

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-bench}"
bench_venv="${MAGDI_BENCH_VENV:-$HOME/.cache/magdi-bench/venv}"

bench_build() {
  # MAGDI_BENCH_SRC builds another checkout instead (for example a `git archive`
  # of one commit, with crates/magdi-bench copied in), into the same target dir.
  if [[ "${MAGDI_BENCH_NO_BUILD:-0}" != 1 ]]; then
    (cd "${MAGDI_BENCH_SRC:-$repo}" && cargo build --release -p magdi -p magdi-bench)
  fi
}

bench_build_profile() {
  # Builds magdi with symbols into CARGO_TARGET_DIR_PROFILE (default
  # /work/target-prof) for the profilers; prints the binary's path.
  local dir="${CARGO_TARGET_DIR_PROFILE:-/work/target-prof}"
  if [[ "${MAGDI_BENCH_NO_BUILD:-0}" != 1 ]]; then
    (cd "${MAGDI_BENCH_SRC:-$repo}" && CARGO_TARGET_DIR="$dir" \
      CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
      cargo build --release -p magdi >&2)
  fi
  echo "$dir/release/magdi"
}

bench_need() {
  # bench_need COMMAND DEBIAN_PACKAGE
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "installing $2 (for $1)" >&2
    apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
  fi
}

bench_python() {
  # bench_python [EXTRA_PIP_PACKAGE...]: prints the venv's python, made on first use.
  if [[ ! -x "$bench_venv/bin/python" ]]; then
    python3 -m venv "$bench_venv" >&2
  fi
  if ! "$bench_venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
    "$bench_venv/bin/pip" install -q matplotlib >&2
  fi
  if (($#)); then
    "$bench_venv/bin/pip" install -q "$@" >&2
  fi
  echo "$bench_venv/bin/python"
}
