"""Where a /chat turn spends its instructions: magdi under valgrind's callgrind,
a fixed number of turns after a warm-up, counters zeroed in between, then
callgrind_annotate's inclusive and exclusive tables. Instruction counts do
not depend on how busy the machine is, so they can be compared across runs.

Needs a magdi built with symbols (benches/callgrind.sh builds one into
CARGO_TARGET_DIR_PROFILE). Run it through benches/callgrind.sh.
"""

import argparse
import http.client
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import benchlib as b


# Functions whose inclusive cost and call count tell where a turn goes.
KEY_FUNCTIONS = [
    ("token counting (bpe-openai, o200k)", "bpe_openai::Tokenizer::count ["),
    ("sqlite3_step (all statements)", "sqlite3_step ["),
    ("sqlite3Prepare (statements prepared, not cached)", "sqlite3Prepare ["),
    ("markdown::to_html (reply_html)", "markdown::to_html ["),
    ("  ammonia Builder::default (sanitiser built per call)",
     "<ammonia::Builder as core::default::Default>::default ["),
    ("  ammonia Builder::clean", "ammonia::Builder::clean ["),
    ("http::form::read_form (the multipart form)", "form::read_form::{{closure}} ["),
    ("conversation::build_prompt", "conversation::build_prompt ["),
    ("store::conversations::recent_window (on a conversation's first turn)",
     "conversations::recent_window ["),
    ("store::conversations::append_messages", "conversations::append_messages ["),
    ("accounts::Tokens::check (JWT)", "accounts::Tokens::check ["),
    ("  Hs256Verifier::new (HMAC key set up per call)", "hmac::Hs256Verifier::new ["),
    ("store::users::by_id", "users::by_id ["),
    ("llm::with_json (provider request body)", "llm::with_json ["),
    ("store writer batch (one transaction)", "magdi::store::run_batch ["),
    ("store::conversations::owned", "conversations::owned ["),
    ("store::usage::add", "usage::add ["),
    ("store::workspace_files::list", "workspace_files::list ["),
    ("workspace::Staging::new (staging folder per form)", "Staging::new ["),
    ("conversation::agent_prompt (cache lookup)", "conversation::agent_prompt ["),
    ("glibc malloc", "./malloc/./malloc/malloc.c:malloc ["),
]


def key_functions(tree, total, turns):
    """A table of KEY_FUNCTIONS from `callgrind_annotate --tree=caller` output:
    inclusive instructions, share of the total, calls per turn, cost per call."""
    import re

    number = re.compile(r"^\s*([\d,]+) \(")
    found = {}
    callers = []
    for line in tree.splitlines():
        if not line.strip():
            callers = []
            continue
        if "*  " in line and number.match(line):
            name = line.split("*  ", 1)[1]
            cost = int(number.match(line).group(1).replace(",", ""))
            calls = sum(int(c.replace(",", "")) for l in callers
                        for c in re.findall(r"\(([\d,]+)x\)", l))
            for label, needle in KEY_FUNCTIONS:
                if needle in name and cost > found.get(label, (0, 0))[0]:
                    found[label] = (cost, calls)
            callers = []
        else:
            callers.append(line)
    rows = ["| function | instructions (inclusive) | share | calls per turn | "
            "instructions per call |", "|---|---|---|---|---|"]
    for label, _ in KEY_FUNCTIONS:
        if label in found:
            cost, calls = found[label]
            rows.append(f"| {label} | {cost:,} | {cost / total * 100:.1f}% | "
                        f"{calls / turns:.1f} | {cost / max(calls, 1):,.0f} |")
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--magdi", required=True, help="a magdi binary with symbols")
    p.add_argument("--turns", type=int, default=200)
    p.add_argument("--stream", action="store_true")
    p.add_argument("--clients", type=int, default=1,
                   help="turns sent at once, each client on its own connection")
    p.add_argument("--out", default=str(b.BENCHES / "results"))
    args = p.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="magdi-profile-"))
    procs = b.Procs(workdir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "callgrind-chat-stream" if args.stream else "callgrind-chat"
    if args.clients > 1:
        name += f"-c{min(args.clients, 4)}"
    dump = workdir / "callgrind.out"
    succeeded = False
    try:
        provider_port = b.free_port()
        procs.start("fake-provider", [b.FAKE_PROVIDER, "--port", provider_port],
                    cpus=b.LOAD_CPUS)
        b.wait_until_answers(f"http://{b.HOST}:{provider_port}/v1/models")
        b.MAGDI = Path(args.magdi)
        magdi = b.Magdi(procs, workdir / "data")
        magdi.create_users(1)
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={dump}",
                "--dump-instr=no", "--collect-jumps=no", args.magdi, "serve",
                "--bind", f"{b.HOST}:{magdi.port}", "--data-dir", magdi.data_dir,
                "--jwt-secret", "bench-secret-not-for-production",
                "--llm-base-url", f"http://{b.HOST}:{provider_port}/v1",
                "--daily-token-limit", "1000000000000"]
        # On one core, as in the gateway benchmark: magdi then serves every
        # request from one thread (valgrind runs one thread at a time anyway).
        magdi.proc = procs.start("magdi-callgrind", argv, cpus=b.SUT_CPUS,
                                 env={"MAGDI_LOG": "warn"})
        b.wait_until_answers(magdi.base + "/version", timeout=300, proc=magdi.proc)
        token = magdi.login_all()[0]
        conversations = [magdi.start_conversation(token) for _ in range(20)]

        headers = {"authorization": f"Bearer {token}"}
        if args.stream:
            headers["accept"] = "text/event-stream"

        def client(first, count):
            conn = http.client.HTTPConnection(b.HOST, magdi.port, timeout=300)
            for i in range(first, first + count):
                body, content_type = b.multipart({
                    "conversation_id": conversations[i % len(conversations)],
                    "category": "test_generation",
                    "message": "Write one pytest test for add(a, b)."})
                conn.request("POST", "/chat", body, {**headers, "content-type": content_type})
                response = conn.getresponse()
                data = response.read()
                if response.status != 200:
                    failures.append(f"/chat: {response.status} {data[:200]}")
                    break
            conn.close()

        failures = []

        def run(count):
            # The turn cap is 4 per user by default, so at most 4 clients.
            clients = max(1, min(args.clients, 4))
            threads = [threading.Thread(target=client, args=(k * 1000, count // clients))
                       for k in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if failures:
                raise RuntimeError(failures[0])

        run(40)
        subprocess.run(["callgrind_control", "--zero", str(magdi.proc.pid)], check=True,
                       capture_output=True, timeout=120)
        started = time.perf_counter()
        run(args.turns)
        elapsed = time.perf_counter() - started
        subprocess.run(["callgrind_control", "--dump", str(magdi.proc.pid)], check=True,
                       capture_output=True, timeout=300)
        magdi.stop()
        dumps = sorted(workdir.glob("callgrind.out*"))
        # The dump taken after the measured turns is the one with the most data
        # after zeroing; the last file is written at exit (shutdown only).
        measured = [d for d in dumps if d != dump] or dumps
        target = max(measured, key=lambda d: d.stat().st_mtime if d != dump else 0)
        total = 0
        for line in target.read_text(errors="replace").splitlines():
            if line.startswith("summary:") or line.startswith("totals:"):
                total = int(line.split()[1])
        tree = subprocess.run(
            ["callgrind_annotate", "--inclusive=yes", "--tree=caller", "--threshold=100",
             "--auto=no", str(target)], capture_output=True, text=True, timeout=300,
            check=True).stdout
        key_table = key_functions(tree, total, args.turns)
        kind = "streamed" if args.stream else "non-streamed"
        report = [f"{args.turns} {kind} /chat turns from {min(args.clients, 4)} client(s) "
                  f"after 40 warm-up turns; {total:,} instructions in all, "
                  f"{total / args.turns:,.0f} per turn (wall time under valgrind "
                  f"{elapsed:.1f} s).", "", *key_table, ""]
        for inclusive in ("yes", "no"):
            annotated = subprocess.run(
                ["callgrind_annotate", f"--inclusive={inclusive}", "--threshold=99",
                 str(target)], capture_output=True, text=True, timeout=300, check=True).stdout
            report.append(f"==== callgrind_annotate --inclusive={inclusive} ====")
            report.extend(annotated.splitlines()[:140])
            report.append("")
        (out / f"{name}.txt").write_text("\n".join(report) + "\n")
        (out / f"{name}.json").write_text(json.dumps({"turns": args.turns, "instructions": total,
                                                      "per_turn": total / args.turns}))
        b.log(f"{total / args.turns:,.0f} instructions per turn; report in {out / name}.txt")
        succeeded = True
    finally:
        procs.stop_all()
        b.cleanup(workdir, succeeded and os.environ.get("MAGDI_BENCH_KEEP") != "1")


if __name__ == "__main__":
    main()
