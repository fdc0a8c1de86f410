"""Resident memory after bursts of logins: each login runs Argon2id with a
19 MiB block on tokio's blocking pool. Three servers in turn, the same load:
glibc's defaults, MALLOC_ARENA_MAX=2, and a fixed MALLOC_MMAP_THRESHOLD_ (so
that blocks that large always come from mmap and go back on free). The
difference tells whether the growth is the allocator keeping freed blocks in
per-thread arenas. Run it through benches/login_memory.sh.
"""

import argparse
import tempfile
import time
from pathlib import Path

import benchlib as b

ALLOCATORS = {
    "glibc defaults": {},
    "MALLOC_ARENA_MAX=2": {"MALLOC_ARENA_MAX": "2"},
    "MALLOC_MMAP_THRESHOLD_=1048576": {"MALLOC_MMAP_THRESHOLD_": "1048576"},
}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bursts", type=int, default=3)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--out", default=str(b.BENCHES / "results"))
    args = p.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="magdi-login-memory-"))
    procs = b.Procs(workdir)
    rows = []
    succeeded = False
    try:
        magdi = b.Magdi(procs, workdir / "data")
        magdi.create_users(1)
        env = {"BENCH_EMAIL": "bench0@example.com", "BENCH_PASSWORD": b.PASSWORD}
        for label, malloc_env in ALLOCATORS.items():
            magdi.start(cpus=None, env=malloc_env)
            time.sleep(1)
            after = [b.proc_status(magdi.proc.pid, "VmRSS")]
            logins = 0
            for _ in range(args.bursts):
                r = b.wrk(magdi.base + "/login", b.BENCHES / "wrk" / "login.lua", 8,
                          args.seconds, env=env, cpus=None)
                logins += r["requests"]
                time.sleep(2)
                after.append(b.proc_status(magdi.proc.pid, "VmRSS"))
            hwm = b.proc_status(magdi.proc.pid, "VmHWM")
            threads = len(list(Path(f"/proc/{magdi.proc.pid}/task").iterdir()))
            magdi.stop()
            rows.append((label, logins, after, hwm, threads))
            b.log(f"{label}: {logins} logins, RSS after each burst "
                  f"{[round(x / 1024) for x in after]} MiB, peak {hwm / 1024:.0f} MiB, "
                  f"{threads} threads")
        succeeded = True
    finally:
        procs.stop_all()
        b.cleanup(workdir, succeeded)
    lines = [f"Measured {b.today()} on {b.machine()}; magdi on both cores; "
             f"{args.bursts} bursts of {args.seconds} s of /login at c=8, 2 s apart.", "",
             "| allocator setting | logins | RSS idle → after each burst | peak RSS (VmHWM) | "
             "threads at the end |", "|---|---|---|---|---|"]
    for label, logins, after, hwm, threads in rows:
        lines.append(f"| {label} | {logins:,} | "
                     f"{' → '.join(f'{x / 1024:.0f}' for x in after)} MiB | "
                     f"{hwm / 1024:.0f} MiB | {threads} |")
    table = "\n".join(lines) + "\n"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "login_memory.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
