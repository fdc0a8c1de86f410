"""Issue 2's benchmark: start-up time to the first answered /version, idle
resident memory, /version requests per second, login throughput at the
configured Argon2 cost, and /version's p99 while logins keep every core busy.

Magdi runs on every core here (the point is whether hashing starves the other
requests), and so does wrk. Run it through benches/accounts.sh.
"""

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import benchlib as b


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--out", default=str(b.BENCHES / "results"))
    args = p.parse_args()
    workdir = tempfile.mkdtemp(prefix="magdi-accounts-")
    procs = b.Procs(workdir)
    facts = {"machine": b.machine(), "date": b.today()}
    runs = []
    succeeded = False
    try:
        # Start-up on an empty data directory: creates the database, migrates,
        # makes the login secret.
        fresh = b.Magdi(procs, Path(workdir) / "fresh")
        started = time.perf_counter()
        fresh.proc = procs.start("magdi-fresh", [b.MAGDI, "serve", "--bind",
                                                 f"{b.HOST}:{fresh.port}", "--data-dir",
                                                 fresh.data_dir], env={"MAGDI_LOG": "warn"})
        b.wait_until_answers(fresh.base + "/version")
        facts["startup_empty_dir_ms"] = (time.perf_counter() - started) * 1000
        fresh.stop()

        magdi = b.Magdi(procs, Path(workdir) / "data")
        magdi.create_users(1)
        starts = []
        for _ in range(5):
            magdi.start(cpus=None)
            starts.append(magdi.startup_s * 1000)
            magdi.stop()
        facts["startup_ms"] = starts

        magdi.start(cpus=None)
        b.request("GET", magdi.base + "/version")
        time.sleep(2)
        facts["idle_rss_kb"] = b.proc_status(magdi.proc.pid, "VmRSS")
        get = b.BENCHES / "wrk" / "get.lua"
        login = b.BENCHES / "wrk" / "login.lua"
        login_env = {"BENCH_EMAIL": "bench0@example.com", "BENCH_PASSWORD": b.PASSWORD}
        for rnd in range(args.rounds):
            r = b.wrk(magdi.base + "/version", get, 32, args.seconds, cpus=None, threads=2)
            runs.append(dict(r, kind="version-c32", round=rnd))
            r = b.wrk(magdi.base + "/version", get, 4, args.seconds, cpus=None)
            runs.append(dict(r, kind="version-c4-alone", round=rnd))
            r = b.wrk(magdi.base + "/login", login, 8, args.seconds, env=login_env, cpus=None)
            runs.append(dict(r, kind="login-c8", round=rnd))
            # Both at once: logins at c=8 keep both cores hashing; /version at c=4.
            both = {}

            def logins():
                both["login"] = b.wrk(magdi.base + "/login", login, 8, args.seconds + 2,
                                      env=login_env, cpus=None)

            t = threading.Thread(target=logins)
            t.start()
            time.sleep(1)
            both["version"] = b.wrk(magdi.base + "/version", get, 4, args.seconds, cpus=None)
            t.join()
            runs.append(dict(both["version"], kind="version-c4-under-logins", round=rnd))
            runs.append(dict(both["login"], kind="login-c8-with-version", round=rnd))
            for kind in ("version-c32", "version-c4-alone", "login-c8",
                         "version-c4-under-logins"):
                last = [x for x in runs if x["kind"] == kind][-1]
                b.log(f"round {rnd + 1} {kind}: {last['rps']:.0f} req/s p50 "
                      f"{last['p50_ms']:.2f} p99 {last['p99_ms']:.2f} ms errors {last['errors']}")
        facts["load_rss_kb"] = b.proc_status(magdi.proc.pid, "VmHWM")
        succeeded = True
    finally:
        procs.stop_all()
        b.cleanup(workdir, succeeded)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "accounts.json").write_text(json.dumps({"facts": facts, "runs": runs}, indent=1))
    lines = [f"Measured {facts['date']} on {facts['machine']}; magdi and wrk on both cores; "
             f"{args.rounds} rounds of {args.seconds} s; median (min–max).", "",
             "| measure | value |", "|---|---|",
             f"| start-up to first answered /version, existing data directory (5 starts) | "
             f"{b.fmt_spread(facts['startup_ms'], ' ms')} |",
             f"| start-up to first answered /version, empty data directory | "
             f"{facts['startup_empty_dir_ms']:.0f} ms |",
             f"| idle RSS | {facts['idle_rss_kb'] / 1024:.1f} MiB |",
             f"| peak RSS over the whole run (VmHWM) | {facts['load_rss_kb'] / 1024:.1f} MiB |"]
    names = {"version-c32": "/version, c=32", "version-c4-alone": "/version, c=4, alone",
             "login-c8": "/login, c=8, alone",
             "version-c4-under-logins": "/version, c=4, while /login c=8 runs",
             "login-c8-with-version": "/login, c=8, while /version c=4 runs"}
    lines += ["", "| load | requests/s | p50 ms | p99 ms | errors |", "|---|---|---|---|---|"]
    for kind, label in names.items():
        rs = [r for r in runs if r["kind"] == kind]
        lines.append(f"| {label} | {b.fmt_spread([r['rps'] for r in rs])} | "
                     f"{b.fmt_spread([r['p50_ms'] for r in rs])} | "
                     f"{b.fmt_spread([r['p99_ms'] for r in rs])} | "
                     f"{sum(r['errors'] for r in rs)} |")
    alone = statistics.median(r["p99_ms"] for r in runs if r["kind"] == "version-c4-alone")
    loaded = statistics.median(r["p99_ms"] for r in runs
                               if r["kind"] == "version-c4-under-logins")
    lines += ["", f"/version p99 rises from {alone:.2f} ms alone to {loaded:.2f} ms while "
              f"logins run ({loaded / alone:.1f}×)."]
    table = "\n".join(lines) + "\n"
    (out / "accounts.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
