"""Where a /chat turn's time goes, kernel included: `perf record` on magdi
(built with symbols) while wrk sends non-streamed turns at concurrency 32,
then the hottest symbols and the split between magdi's code, its libraries
and the kernel. Magdi on core 0, wrk and the fake provider on core 1. Run it
through benches/perf.sh.
"""

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

import benchlib as b


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--magdi", required=True, help="magdi built with symbols")
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--top", type=int, default=45)
    p.add_argument("--per-user", type=int, default=8,
                   help="conversations per user that the turns rotate through")
    p.add_argument("--callers", metavar="SYMBOL",
                   help="also record call stacks (DWARF unwinding; slower) and report "
                        "who calls SYMBOL, e.g. __memmove_avx512_unaligned_erms")
    p.add_argument("--keep", action="store_true",
                   help="keep perf.data (its path is printed) for `perf report -i`")
    return p.parse_args()


def tidy(line):
    # perf pads its columns for the widest symbol and adds empty ones.
    return re.sub(r"(\s+-)*\s*$", "", line)


def main():
    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="magdi-perf-"))
    procs = b.Procs(workdir)
    succeeded = False
    try:
        provider_port = b.free_port()
        procs.start("fake-provider", [b.FAKE_PROVIDER, "--port", provider_port],
                    cpus=b.LOAD_CPUS)
        b.wait_until_answers(f"http://{b.HOST}:{provider_port}/v1/models")
        b.MAGDI = Path(args.magdi)
        magdi = b.Magdi(procs, workdir / "data")
        magdi.create_users(32)
        magdi.start("--llm-base-url", f"http://{b.HOST}:{provider_port}/v1",
                    "--daily-token-limit", "0")
        magdi.login_all()
        conversations = magdi.conversations_file(workdir / "conversations.txt", args.per_user)
        lua = b.BENCHES / "wrk" / "magdi-chat.lua"
        env = {"BENCH_CONVERSATIONS": str(conversations)}
        b.wrk(magdi.base + "/chat", lua, args.concurrency, 2, env=env)  # warm-up
        data = workdir / "perf.data"
        perf = subprocess.Popen(
            # DWARF stacks copy 16 KiB per sample: sample less often then.
            ["perf", "record", "-q",
             *(["-F", "499", "--call-graph", "dwarf,16384"] if args.callers
               else ["-F", "2999", "-g"]),
             "-o", str(data),
             "-p", str(magdi.proc.pid), "--", "sleep", str(args.seconds)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        r = b.wrk(magdi.base + "/chat", lua, args.concurrency, args.seconds, env=env)
        perf.communicate(timeout=120)
        report = ["perf", "report", "-i", str(data), "--stdio", "--no-children",
                  "--percent-limit", "0.4"]
        by_dso = subprocess.run([*report, "--sort", "dso", "-g", "none"],
                                capture_output=True, text=True, check=True).stdout
        by_symbol = subprocess.run([*report, "--sort", "dso,symbol", "-g", "none"],
                                   capture_output=True, text=True, check=True).stdout
        lines = [f"Measured {b.today()} on {b.machine()}.",
                 f"{r['requests']} non-streamed /chat turns in {args.seconds} s at "
                 f"c={args.concurrency} ({r['rps']:.0f}/s) under perf record.", "",
                 "==== by binary ===="]
        lines += [tidy(l) for l in by_dso.splitlines() if l and not l.startswith("#")]
        lines += ["", "==== by symbol ===="]
        lines += [tidy(l) for l in by_symbol.splitlines()
                  if l and not l.startswith("#")][:args.top]
        if args.callers:
            callers = subprocess.run(
                [*report, "--sort", "symbol", "--symbols", args.callers, "-G",
                 "--percent-limit", "0.1"], capture_output=True, text=True).stdout
            lines += ["", f"==== callers of {args.callers} ===="]
            lines += [tidy(l) for l in callers.splitlines() if l and not l.startswith("#")][:150]
        succeeded = True
    finally:
        procs.stop_all()
        if args.keep:
            b.log(f"perf data kept in {workdir / 'perf.data'}")
        else:
            b.cleanup(workdir, succeeded)
    text = "\n".join(lines) + "\n"
    (b.BENCHES / "results" / "perf-chat.txt").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
