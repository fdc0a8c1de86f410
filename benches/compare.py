"""Two or more magdi builds against each other: non-streamed /chat at one
concurrency, the builds alternating round by round, each round on fresh
conversations (as the gateway makes them), the builds not being measured
paused. Prints each round and the medians; writes nothing.

Usage (through benches/compare.sh): compare.sh BINARY BINARY [...]
Environment: ROUNDS (default 5), RUN_SECONDS (10), CONCURRENCY (32); SEQUENCE=1
runs, in each round, the gateway's own sequence instead (c=1 and c=32, plain
then streamed), to see how a build holds up as its conversations pile up.
"""
import os
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as b  # noqa: E402


def main():
    binaries = sys.argv[1:]
    if not binaries:
        sys.exit(__doc__)
    rounds = int(os.environ.get("ROUNDS", "5"))
    seconds = int(os.environ.get("RUN_SECONDS", "10"))
    concurrency = int(os.environ.get("CONCURRENCY", "32"))
    if os.environ.get("SEQUENCE") == "1":
        runs, measured = [(0, 1), (0, 32), (1, 1), (1, 32)], (0, 32)
    else:
        runs = [(0, concurrency)]
        measured = runs[0]
    workdir = Path(tempfile.mkdtemp(prefix="magdi-compare-"))
    procs = b.Procs(workdir)
    succeeded = False
    try:
        port = b.free_port()
        procs.start("fake-provider", [b.FAKE_PROVIDER, "--port", port], cpus=b.LOAD_CPUS)
        b.wait_until_answers(f"http://{b.HOST}:{port}/v1/models")
        servers = []
        for i, path in enumerate(binaries):
            b.MAGDI = Path(path)
            server = b.Magdi(procs, workdir / f"data{i}")
            server.create_users(32)
            server.start("--llm-base-url", f"http://{b.HOST}:{port}/v1",
                         "--daily-token-limit", "0")
            server.login_all()
            os.killpg(server.proc.pid, signal.SIGSTOP)
            servers.append(server)
        results = {path: [] for path in binaries}
        lua = b.BENCHES / "wrk" / "magdi-chat.lua"
        for r in range(rounds):
            for path, server in zip(binaries, servers):
                os.killpg(server.proc.pid, signal.SIGCONT)
                for stream, c in runs:
                    conversations = server.conversations_file(workdir / "c.txt", 40)
                    env = {"BENCH_CONVERSATIONS": str(conversations),
                           "BENCH_STREAM": str(stream)}
                    out = b.wrk(server.base + "/chat", lua, c, seconds, env=env)
                    if (stream, c) == measured:
                        results[path].append(out["rps"])
                    print(f"round {r + 1} {path} stream={stream} c={c}: {out['rps']:.0f} req/s"
                          f" p50 {out['p50_ms']:.2f} ms p99 {out['p99_ms']:.2f} ms"
                          f" rss {b.tree_rss_kb(server.proc.pid) // 1024} MiB", flush=True)
                os.killpg(server.proc.pid, signal.SIGSTOP)
        for path in binaries:
            values = sorted(results[path])
            print(f"{path}: median {values[len(values) // 2]:.0f} req/s,"
                  f" by round {[round(v) for v in results[path]]}")
        for server in servers:
            os.killpg(server.proc.pid, signal.SIGCONT)
        succeeded = True
    finally:
        procs.stop_all()
        b.cleanup(workdir, succeeded)


if __name__ == "__main__":
    main()
