"""Issue 5's benchmark: /chat throughput with the daily allowance checked
(`--daily-token-limit 1000000000000`, never reached) against
`--daily-token-limit 0` (unlimited), alternating in the same run on the same
data directory; then /metrics scrape time with 10,000 conversations in the
database, created through the API.

Magdi runs on core 0, wrk and the fake provider on core 1, as in gateway.py.
Run it through benches/allowance.sh.
"""

import argparse
import http.client
import json
import tempfile
import threading
import time
from pathlib import Path

import benchlib as b

USERS = 32
CONVERSATIONS = 10_000


def create_conversations(magdi, count, workers=8):
    """Starts `count` conversations through the API from `workers` keep-alive clients."""
    made = []
    lock = threading.Lock()
    per_worker = count // workers

    def work(k):
        conn = http.client.HTTPConnection(b.HOST, magdi.port, timeout=60)
        token = magdi.tokens[k % len(magdi.tokens)]
        body = json.dumps({"category": "qa_info"})
        for _ in range(per_worker):
            conn.request("POST", "/start_conversation", body,
                         {"authorization": f"Bearer {token}",
                          "content-type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            if response.status != 200:
                raise RuntimeError(f"start_conversation: {response.status} {data[:200]}")
            with lock:
                made.append(1)
        conn.close()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(workers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(made), time.perf_counter() - started


def scrape(magdi, path, times=50):
    conn = http.client.HTTPConnection(b.HOST, magdi.port, timeout=30)
    samples, size = [], 0
    for _ in range(times):
        started = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        size = len(response.read())
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status == 200, response.status
    conn.close()
    samples.sort()
    return {"median_ms": samples[len(samples) // 2], "p99_ms": samples[-1], "bytes": size}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--out", default=str(b.BENCHES / "results"))
    args = p.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="magdi-allowance-"))
    procs = b.Procs(workdir)
    facts = {"machine": b.machine(), "date": b.today()}
    runs = []
    succeeded = False
    try:
        provider_port = b.free_port()
        procs.start("fake-provider", [b.FAKE_PROVIDER, "--port", provider_port],
                    cpus=b.LOAD_CPUS)
        b.wait_until_answers(f"http://{b.HOST}:{provider_port}/v1/models")
        magdi = b.Magdi(procs, workdir / "data")
        magdi.create_users(USERS)
        base_flags = ["--llm-base-url", f"http://{b.HOST}:{provider_port}/v1"]
        modes = {"on": ["--daily-token-limit", "1000000000000"],
                 "off": ["--daily-token-limit", "0"]}
        lua = b.BENCHES / "wrk" / "magdi-chat.lua"
        for rnd in range(args.rounds):
            for mode, flags in modes.items():
                for conc in (1, 32):
                    magdi.start(*base_flags, *flags)
                    magdi.login_all()
                    conversations = magdi.conversations_file(workdir / "conversations.txt", 8)
                    r = b.wrk(magdi.base + "/chat", lua, conc, args.seconds,
                              env={"BENCH_CONVERSATIONS": str(conversations)})
                    magdi.stop()
                    r.update(mode=mode, conc=conc, round=rnd)
                    runs.append(r)
                    b.log(f"round {rnd + 1} allowance {mode} c={conc}: {r['rps']:.0f} req/s "
                          f"p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f} ms errors {r['errors']}")

        magdi.start(*base_flags, *modes["on"])
        magdi.login_all()
        facts["scrape_before"] = scrape(magdi, "/metrics")
        facts["update_tokens_before"] = scrape(magdi, "/metrics-update-tokens")
        made, seconds = create_conversations(magdi, CONVERSATIONS)
        facts["created"] = {"count": made, "seconds": seconds}
        b.log(f"created {made} conversations in {seconds:.1f} s")
        magdi.stop()
        # A restart, so that the gauges are computed from the database.
        magdi.start(*base_flags, *modes["on"])
        facts["scrape_after"] = scrape(magdi, "/metrics")
        facts["update_tokens_after"] = scrape(magdi, "/metrics-update-tokens")
        r = b.wrk(magdi.base + "/metrics", b.BENCHES / "wrk" / "get.lua", 1, 5)
        facts["scrape_wrk"] = {k: r[k] for k in ("rps", "p50_ms", "p99_ms", "errors")}
        status, text = b.request("GET", magdi.base + "/metrics")
        facts["active_gauge"] = [line for line in text.decode().splitlines()
                                 if line.startswith("magdi_active_conversations")]
        succeeded = True
    finally:
        procs.stop_all()
        b.cleanup(workdir, succeeded)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "allowance.json").write_text(json.dumps({"facts": facts, "runs": runs}, indent=1))
    lines = [f"Measured {facts['date']} on {facts['machine']}; magdi on core 0, wrk and the "
             f"fake provider on core 1; non-streamed /chat, {USERS} users, fresh conversations "
             f"each run; {args.rounds} alternating rounds of {args.seconds} s; median (min–max).",
             "", "| allowance | c | requests/s | p50 ms | p99 ms | errors |",
             "|---|---|---|---|---|---|"]
    for conc in (1, 32):
        for mode in ("on", "off"):
            rs = [r for r in runs if r["mode"] == mode and r["conc"] == conc]
            lines.append(f"| {mode} | {conc} | {b.fmt_spread([r['rps'] for r in rs])} | "
                         f"{b.fmt_spread([r['p50_ms'] for r in rs])} | "
                         f"{b.fmt_spread([r['p99_ms'] for r in rs])} | "
                         f"{sum(r['errors'] for r in rs)} |")
        on = b.spread([r["rps"] for r in runs if r["mode"] == "on" and r["conc"] == conc])[0]
        off = b.spread([r["rps"] for r in runs if r["mode"] == "off" and r["conc"] == conc])[0]
        lines.append(f"| on ÷ off | {conc} | {on / off:.3f} | | | |")
    s0, s1 = facts["scrape_before"], facts["scrape_after"]
    u0, u1 = facts["update_tokens_before"], facts["update_tokens_after"]
    lines += ["", "| scrape | conversations | median | slowest of 50 | body |",
              "|---|---|---|---|---|",
              f"| /metrics | few | {s0['median_ms']:.2f} ms | {s0['p99_ms']:.2f} ms | "
              f"{s0['bytes']:,} B |",
              f"| /metrics | {facts['created']['count']:,} more | {s1['median_ms']:.2f} ms | "
              f"{s1['p99_ms']:.2f} ms | {s1['bytes']:,} B |",
              f"| /metrics-update-tokens | few | {u0['median_ms']:.2f} ms | {u0['p99_ms']:.2f} ms "
              f"| {u0['bytes']:,} B |",
              f"| /metrics-update-tokens | {facts['created']['count']:,} more | "
              f"{u1['median_ms']:.2f} ms | {u1['p99_ms']:.2f} ms | {u1['bytes']:,} B |",
              "", f"/metrics under wrk c=1 for 5 s with the {facts['created']['count']:,} "
              f"conversations: {facts['scrape_wrk']['rps']:.0f} scrapes/s, p50 "
              f"{facts['scrape_wrk']['p50_ms']:.3f} ms, p99 {facts['scrape_wrk']['p99_ms']:.3f} ms. "
              f"Creating them through the API took {facts['created']['seconds']:.1f} s "
              f"({facts['created']['count'] / facts['created']['seconds']:.0f}/s, 8 clients).",
              f"Gauge after the restart: `{' '.join(facts['active_gauge'])}`."]
    table = "\n".join(lines) + "\n"
    (out / "allowance.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
