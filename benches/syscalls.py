"""Kernel-side cost of a /chat turn: `perf stat` (task-clock, context
switches) on magdi while wrk sends turns at concurrency 1 and 32, then
`strace -f -c` over a few seconds of turns at concurrency 1 and 32 (strace
slows the server a lot; only its counts per turn mean anything). Magdi on core 0, wrk
and the fake provider on core 1. Run it through benches/syscalls.sh.
"""

import os
import subprocess
import tempfile
import time
from pathlib import Path

import benchlib as b


def main():
    workdir = Path(tempfile.mkdtemp(prefix="magdi-syscalls-"))
    procs = b.Procs(workdir)
    lines = [f"Measured {b.today()} on {b.machine()}.", ""]
    succeeded = False
    try:
        provider_port = b.free_port()
        procs.start("fake-provider", [b.FAKE_PROVIDER, "--port", provider_port],
                    cpus=b.LOAD_CPUS)
        b.wait_until_answers(f"http://{b.HOST}:{provider_port}/v1/models")
        magdi = b.Magdi(procs, workdir / "data")
        magdi.create_users(32)
        magdi.start("--llm-base-url", f"http://{b.HOST}:{provider_port}/v1",
                    "--daily-token-limit", "0")
        magdi.login_all()
        per_user = int(os.environ.get("BENCH_PER_USER", "40"))
        conversations = magdi.conversations_file(workdir / "conversations.txt", per_user)
        lines += [f"Turns rotate over {per_user} conversations per user (BENCH_PER_USER).", ""]
        lua = b.BENCHES / "wrk" / "magdi-chat.lua"
        env = {"BENCH_CONVERSATIONS": str(conversations)}
        lines += ["| c | turns/s | CPU time per turn | context switches per turn | "
                  "CPUs used by magdi |", "|---|---|---|---|---|"]
        for conc in (1, 32):
            perf = subprocess.Popen(
                ["perf", "stat", "-x", ",", "-e", "task-clock,context-switches",
                 "-p", str(magdi.proc.pid), "--", "sleep", "5"],
                stderr=subprocess.PIPE, text=True)
            r = b.wrk(magdi.base + "/chat", lua, conc, 5, env=env)
            _, err = perf.communicate(timeout=60)
            values = {}
            for row in err.splitlines():
                parts = row.split(",")
                if len(parts) > 3 and parts[0].replace(".", "").isdigit():
                    values[parts[2]] = float(parts[0])
            clock_ms = values.get("task-clock", 0.0)
            switches = values.get("context-switches", 0.0)
            lines.append(f"| {conc} | {r['rps']:.0f} | {clock_ms / r['requests']:.3f} ms | "
                         f"{switches / r['requests']:.1f} | {clock_ms / 5000:.2f} |")
        # At c=32 the writer commits many turns at once, so its calls per
        # turn differ from c=1's.
        for conc in (1, 32):
            strace = subprocess.Popen(["strace", "-f", "-c", "-p", str(magdi.proc.pid)],
                                      stderr=subprocess.PIPE, text=True)
            time.sleep(1)
            r = b.wrk(magdi.base + "/chat", lua, conc, 5, env=env)
            time.sleep(0.5)
            strace.send_signal(2)
            _, err = strace.communicate(timeout=60)
            turns = r["requests"]
            lines += ["", f"System calls per turn (strace -f -c over {turns} turns at c={conc}):",
                      "", "| system call | calls per turn |", "|---|---|"]
            for row in err.splitlines():
                parts = row.split()
                if (len(parts) >= 5 and parts[0].replace(".", "").isdigit()
                        and parts[-1] != "total"):
                    calls = int(parts[3])
                    if calls / turns >= 0.1:
                        lines.append(f"| {parts[-1]} | {calls / turns:.1f} |")
        succeeded = True
    finally:
        procs.stop_all()
        b.cleanup(workdir, succeeded)
    table = "\n".join(lines) + "\n"
    (b.BENCHES / "results" / "syscalls.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
