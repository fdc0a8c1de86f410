#!/usr/bin/env bash
# Runs MagdiCreator on the offline model (`builtin`) over a corpus of small pure-Python projects
# from PyPI, through a real magdi server, and checks that the tests it writes pass on the
# unmodified projects.
#
# The script builds magdi (or takes MAGDI_BIN), starts it on 127.0.0.1 with a port the system
# picks and a fresh temporary data directory, and registers a user. Then, for each pinned
# project: download its source distribution (cached under ~/.cache/magdi-corpus, never inside
# the repository), zip it the way a repository zip looks (one top folder), upload the zip to a
# new MagdiCreator conversation, ask for tests in a chat turn, download the turn's artifact,
# unpack it and run the generated tests with `python3 -m pytest` in a virtual environment this
# script creates (pytest and the corpus's runtime dependencies; the projects themselves are not
# installed). Prints a Markdown table. The server is stopped by its process id at the end.
#
# Usage: benches/testgen-corpus.sh [NAME==VERSION ...]
# Env:   MAGDI_BIN (a built magdi; otherwise `cargo build --release` into CARGO_TARGET_DIR),
#        CARGO_TARGET_DIR, MAGDI_CORPUS_CACHE (default ~/.cache/magdi-corpus), PYTHON (python3)
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

# Time bounds, in seconds, for each step (`http_timeout` also bounds zipping and unzipping).
build_timeout=1800
pip_timeout=600
start_timeout=30
http_timeout=120
pytest_timeout=900

log() { echo "$*" >&2; }

mkdir -p "$cache/sdists"
work="$(mktemp -d "${TMPDIR:-/tmp}/magdi-corpus.XXXXXX")"
server_pid=""
stop_server() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
      log "magdi did not stop within 5 s; killing it"
      kill -KILL "$server_pid" 2>/dev/null || true
    fi
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
trap 'stop_server; rm -rf "$work"' EXIT

# --- magdi --------------------------------------------------------------------------------
if [[ -n "${MAGDI_BIN:-}" ]]; then
  magdi="$MAGDI_BIN"
else
  log "building magdi (release) into $target_dir..."
  (cd "$repo" && CARGO_TARGET_DIR="$target_dir" timeout "$build_timeout" \
    cargo build -q --release --bin magdi)
  magdi="$target_dir/release/magdi"
fi
[[ -x "$magdi" ]] || { log "no magdi binary at $magdi"; exit 1; }

# Port 0: the system picks a free port, and the server logs the address it got.
log "starting magdi on 127.0.0.1 with the offline model..."
MAGDI_LOG=info MAGDI_LOG_FORMAT=text NO_COLOR=1 "$magdi" serve \
  --bind 127.0.0.1:0 \
  --data-dir "$work/data" \
  --daily-token-limit 0 \
  >"$work/server.log" 2>&1 &
server_pid=$!
base=""
for _ in $(seq 1 $((start_timeout * 10))); do
  base="$(grep -o 'http://127\.0\.0\.1:[0-9]\+' "$work/server.log" | sed -n 1p || true)"
  [[ -n "$base" ]] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if [[ -z "$base" ]] || ! curl -sf --max-time 5 "$base/healthz" >/dev/null; then
  log "magdi did not start within ${start_timeout} s; its log:"
  cat "$work/server.log" >&2
  exit 1
fi
log "magdi is up at $base (pid $server_pid)"

# api METHOD PATH [CURL_ARGS...]: prints the body; fails on a non-2xx status.
api() {
  local method="$1" path="$2"
  shift 2
  curl -sS --fail-with-body --max-time "$http_timeout" -X "$method" "$base$path" "$@"
}
json_field() { "$python" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

email="corpus@example.com"
password="corpus password $$"
api POST /register -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"$password\",\"confirmPassword\":\"$password\"}" >/dev/null
token="$(api POST /login -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"$password\"}" | json_field token)"
auth=(-H "authorization: Bearer $token")

# --- Python -------------------------------------------------------------------------------
log "creating a fresh virtual environment with pytest..."
timeout "$pip_timeout" "$python" -m venv "$work/venv"
venv_python="$work/venv/bin/python"
timeout "$pip_timeout" "$venv_python" -m pip install -q --disable-pip-version-check \
  'pytest>=8,<9' "${dependencies[@]}"

# Reads the chat answer (JSON) on stdin; prints `modules found asserted unasserted zip_id`:
# the Python rows of the reply's summary table, and modules with examples but no assertion
# among those that got tests.
read_reply() {
  "$python" -c '
import json, re, sys
answer = json.load(sys.stdin)
modules = found = asserted = unasserted = 0
row = re.compile(r"^\| `[^`]+` \(Python\) \| ([^|]*) \| (\d+) \| (\d+) \| (\d+) \| (.*) \|$")
for line in answer["reply"].splitlines():
    m = row.match(line)
    if not m:
        continue
    modules += 1
    n_found, n_asserted = int(m.group(2)), int(m.group(3))
    found += n_found
    asserted += n_asserted
    notes = m.group(5).split("; ")
    tested = not any(n.startswith(("left out: ", "skipped at run time: ")) for n in notes)
    if tested and n_found > 0 and n_asserted == 0:
        unasserted += 1
artifact = answer.get("artifact") or {}
print(modules, found, asserted, unasserted, artifact.get("zip_id") or "-")
'
}

# Prints `passed failed errors skipped` from a JUnit XML report (an unreadable one is an error).
read_junit() {
  "$venv_python" - "$1" <<'PY'
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
}

# ask_for_tests ZIP REPLY_JSON DIR: uploads ZIP to a new MagdiCreator conversation, asks for
# tests, keeps the answer in REPLY_JSON and unpacks the answer's artifact into DIR.
ask_for_tests() {
  local conversation zip_id
  conversation="$(api POST /start_conversation "${auth[@]}" -H 'content-type: application/json' \
    -d '{"category":"test_generation","agent_name":"MagdiCreator","llm_model":"builtin"}' \
    | json_field conversation_id)" || return 1
  api POST /conversation/upload "${auth[@]}" -F "conversation_id=$conversation" \
    -F "files[]=@$1;type=application/zip" >/dev/null || return 1
  api POST /chat "${auth[@]}" -F "conversation_id=$conversation" -F category=test_generation \
    -F 'message=Write pytest tests for this project.' >"$2" || return 1
  zip_id="$(read_reply <"$2" | cut -d' ' -f5)" || return 1
  if [[ "$zip_id" != "-" ]]; then
    api GET "/api/download?zip_id=$zip_id" "${auth[@]}" -o "$3.zip" || return 1
    (cd "$3" && timeout "$http_timeout" "$python" -m zipfile -e "$3.zip" .) || return 1
  fi
}

find_sdist() {
  find "$cache/sdists" -maxdepth 1 -iname "$(echo "$1" | tr '_-' '??')-$2.*" | sed -n 1p
}

# --- the corpus ---------------------------------------------------------------------------
rows=()
passing=0
for spec in "${projects[@]}"; do
  name="${spec%%==*}"
  version="${spec##*==}"
  sdist="$(find_sdist "$name" "$version")"
  if [[ -z "$sdist" ]]; then
    log "downloading $spec..."
    timeout "$pip_timeout" "$python" -m pip download -q --disable-pip-version-check \
      --no-binary :all: --no-deps -d "$cache/sdists" "$spec" >&2
    sdist="$(find_sdist "$name" "$version")"
  fi
  [[ -n "$sdist" ]] || { log "no source distribution for $spec"; exit 1; }

  # The sdist's own top folder (NAME-VERSION/) stays, as in a zip of a repository.
  unpacked="$work/src-$name"
  mkdir -p "$unpacked"
  case "$sdist" in
    *.zip) (cd "$unpacked" && timeout "$http_timeout" "$python" -m zipfile -e "$sdist" .) ;;
    *) timeout "$http_timeout" tar -xf "$sdist" -C "$unpacked" ;;
  esac
  upload="$work/$name-$version.zip"
  # Some sdists hold files dated before 1980, which a zip cannot record: those get 1980.
  timeout "$http_timeout" "$python" - "$unpacked" "$upload" <<'PY'
import os
import sys
import zipfile

source, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, strict_timestamps=False) as archive:
    for folder, dirs, files in os.walk(source):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            archive.write(path, os.path.relpath(path, source))
PY

  log "$spec: uploading, asking MagdiCreator for tests..."
  tested="$work/tested-$name"
  mkdir -p "$tested"
  if ! ask_for_tests "$upload" "$work/$name-chat.json" "$tested"; then
    log "--- $spec: the server did not answer as expected (its log: $work/server.log)"
    rows+=("| $spec | - | - | - | - | 1 | no |")
    continue
  fi
  read -r modules found asserted unasserted zip_id < <(read_reply <"$work/$name-chat.json")

  mapfile -t dirs < <(cd "$tested" && find . -type d -name magdi_generated -path '*/tests/*' | sort)
  result="$work/$name.xml"
  if ((${#dirs[@]})); then
    (cd "$tested" && timeout "$pytest_timeout" "$venv_python" -m pytest -q -p no:cacheprovider \
      --junitxml="$result" "${dirs[@]}" >"$work/$name.log" 2>&1) || true
  fi
  read -r passed failed errors skipped < <(read_junit "$result")

  ok="no"
  if [[ "$failed" == 0 && "$errors" == 0 && "$unasserted" == 0 ]]; then
    ok="yes"
    passing=$((passing + 1))
  else
    log "--- $spec: $failed failed, $errors errors, $unasserted modules with examples but no assertion (log: tail below)"
    tail -n 30 "$work/$name.log" >&2 2>/dev/null || true
  fi
  rows+=("| $spec | $modules | $found | $asserted | $passed / $failed / $skipped | $errors | $ok |")
done

stop_server

echo
echo "| project | modules | examples found | assertions generated | tests passed / failed / skipped | errors | green |"
echo "|---|---:|---:|---:|---|---:|---|"
printf '%s\n' "${rows[@]}"
echo
echo "$passing of ${#projects[@]} projects green (no failures, no collection errors, an assertion in every module with examples)."
