"""The cost of Nagle's algorithm on streamed answers: the bare proxy's
streamed chat with poem's default listener against the same proxy setting
TCP_NODELAY on accepted connections (`bare-proxy --nodelay`), alternating.
Magdi's listener is poem's default one. Run it through benches/nodelay.sh.
"""

import argparse
import tempfile
from pathlib import Path

import benchlib as b


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--out", default=str(b.BENCHES / "results"))
    args = p.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="magdi-nodelay-"))
    procs = b.Procs(workdir)
    runs = []
    succeeded = False
    try:
        provider_port = b.free_port()
        procs.start("fake-provider", [b.FAKE_PROVIDER, "--port", provider_port],
                    cpus=b.LOAD_CPUS)
        b.wait_until_answers(f"http://{b.HOST}:{provider_port}/v1/models")
        urls = {}
        for name, extra in (("default", []), ("nodelay", ["--nodelay"])):
            port = b.free_port()
            proc = procs.start(name, [b.BARE_PROXY, "--port", port, "--no-db", "--upstream",
                                      f"http://{b.HOST}:{provider_port}/v1", *extra],
                               cpus=b.SUT_CPUS)
            urls[name] = f"http://{b.HOST}:{port}/v1/chat/completions"
            b.wait_until_answers(urls[name], method="POST", proc=proc,
                                 body=b'{"model":"m","messages":[{"role":"user","content":"x"}]}',
                                 headers={"content-type": "application/json"})
        lua = b.BENCHES / "wrk" / "openai-chat.lua"
        for rnd in range(args.rounds):
            for conc in (1, 32):
                for name, url in urls.items():
                    r = b.wrk(url, lua, conc, args.seconds, env={"BENCH_STREAM": "1"})
                    r.update(name=name, conc=conc, round=rnd)
                    runs.append(r)
                    b.log(f"round {rnd + 1} c={conc} {name}: {r['rps']:.0f} req/s "
                          f"p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms")
        succeeded = True
    finally:
        procs.stop_all()
        b.cleanup(workdir, succeeded)
    lines = [f"Measured {b.today()} on {b.machine()}; streamed chat through the bare proxy "
             f"(no database), {args.rounds} alternating rounds of {args.seconds} s; "
             "median (min–max).", "",
             "| listener | c | requests/s | p50 ms | p99 ms |", "|---|---|---|---|---|"]
    for conc in (1, 32):
        for name in ("default", "nodelay"):
            rs = [r for r in runs if r["name"] == name and r["conc"] == conc]
            label = "poem default (Nagle on)" if name == "default" else "TCP_NODELAY set"
            lines.append(f"| {label} | {conc} | {b.fmt_spread([r['rps'] for r in rs])} | "
                         f"{b.fmt_spread([r['p50_ms'] for r in rs])} | "
                         f"{b.fmt_spread([r['p99_ms'] for r in rs])} |")
    table = "\n".join(lines) + "\n"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "nodelay.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
