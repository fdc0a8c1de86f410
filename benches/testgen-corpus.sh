#!/usr/bin/env bash
# Runs Magdi's offline test generator on a corpus of small pure-Python projects from PyPI and
# checks that the tests it writes pass on the unmodified projects.
#
# For each pinned project: download its source distribution (cached under
# ~/.cache/magdi-corpus, never inside the repository), unpack it into a fresh workspace the way
# an uploaded zip would look (one top folder), run the generator on it through the crate's
# example binary, then run the generated tests with `python3 -m pytest` in a virtual
# environment this script creates (holding pytest only). Prints a Markdown table.
#
# Usage: benches/testgen-corpus.sh [NAME==VERSION ...]
# Env:   MAGDI_CORPUS_CACHE (default ~/.cache/magdi-corpus), CARGO_TARGET_DIR, PYTHON (python3)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${MAGDI_CORPUS_CACHE:-$HOME/.cache/magdi-corpus}"
python="${PYTHON:-python3}"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"

projects=(
  toolz==1.0.0
  more-itertools==10.5.0
  humanize==4.11.0
  inflection==0.5.1
  boltons==24.1.0
  tabulate==0.9.0
  sortedcontainers==2.4.0
  natsort==8.4.0
  semver==3.0.2
  pydash==8.0.4
  bidict==0.23.1
  wcwidth==0.2.13
)
# Runtime dependencies of the projects above, installed into the venv like a user would (the
# projects themselves are not installed: the generated conftest puts their source on sys.path).
# Without them the affected modules' tests are skipped by `pytest.importorskip`, not failed.
dependencies=(
  typing-extensions==4.12.2
)
if [[ $# -gt 0 ]]; then
  projects=("$@")
fi

mkdir -p "$cache/sdists"
work="$(mktemp -d "${TMPDIR:-/tmp}/magdi-corpus.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "building the generator..." >&2
(cd "$repo" && CARGO_TARGET_DIR="$target_dir" cargo build -q -p magdi-testgen --example generate)
generate="$target_dir/debug/examples/generate"

echo "creating a fresh virtual environment with pytest..." >&2
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check 'pytest>=8,<9'
venv_python="$work/venv/bin/python"
"$venv_python" -m pip install -q --disable-pip-version-check "${dependencies[@]}"

rows=()
passing=0
for spec in "${projects[@]}"; do
  name="${spec%%==*}"
  version="${spec##*==}"
  sdist="$(find "$cache/sdists" -maxdepth 1 -iname "$(echo "$name" | tr '-' '?')-$version.*" | head -n1)"
  if [[ -z "$sdist" ]]; then
    echo "downloading $spec..." >&2
    "$python" -m pip download -q --disable-pip-version-check --no-binary :all: --no-deps \
      -d "$cache/sdists" "$spec" >&2
    sdist="$(find "$cache/sdists" -maxdepth 1 -iname "$(echo "$name" | tr '-' '?')-$version.*" | head -n1)"
  fi

  workspace="$work/ws-$name"
  mkdir -p "$workspace"
  case "$sdist" in
    *.zip) (cd "$workspace" && "$python" -m zipfile -e "$sdist" .) ;;
    *) tar -xf "$sdist" -C "$workspace" ;;
  esac

  stats="$("$generate" "$workspace" | grep '^magdi-testgen-stats:' || true)"
  field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$stats"; }
  modules="$(field modules)"; found="$(field found)"; asserted="$(field asserted)"
  unasserted="$(field modules_with_examples_but_no_assertion)"

  mapfile -t dirs < <(cd "$workspace" && find . -type d -name magdi_generated -path '*/tests/*' | sort)
  result="$work/$name.xml"
  (cd "$workspace" && timeout 900 "$venv_python" -m pytest -q -p no:cacheprovider \
      --junitxml="$result" "${dirs[@]}" >"$work/$name.log" 2>&1) || true
  read -r passed failed errors skipped < <("$venv_python" - "$result" <<'PY'
import sys
import xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except (OSError, ET.ParseError):
    print(0, 0, 1, 0)
    raise SystemExit
suites = [root] if root.tag == "testsuite" else list(root)
total = lambda key: sum(int(s.get(key, 0)) for s in suites)
failed, errors, skipped = total("failures"), total("errors"), total("skipped")
print(total("tests") - failed - errors - skipped, failed, errors, skipped)
PY
  )
  ok="no"
  if [[ "$failed" == 0 && "$errors" == 0 && "$unasserted" == 0 ]]; then
    ok="yes"
    passing=$((passing + 1))
  else
    echo "--- $spec: $failed failed, $errors errors, $unasserted modules with examples but no assertion (log: tail below)" >&2
    tail -n 30 "$work/$name.log" >&2
  fi
  rows+=("| $spec | $modules | $found | $asserted | $passed / $failed / $skipped | $errors | $ok |")
done

echo
echo "| project | modules | examples found | assertions generated | tests passed / failed / skipped | errors | green |"
echo "|---|---:|---:|---:|---|---:|---|"
printf '%s\n' "${rows[@]}"
echo
echo "$passing of ${#projects[@]} projects green (no failures, no collection errors, an assertion in every module with examples)."
