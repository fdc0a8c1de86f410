"""Issue 9's harness: magdi's /chat against the provider alone, a bare proxy
(with and without its SQLite row) and, with --with-litellm, LiteLLM's proxy,
all in one run on one machine. Run it through benches/gateway.sh, which builds
the binaries and makes the virtual environment first.

The system under test runs on core 0 (taskset), wrk and the fake provider on
core 1. Only the system being measured runs: the others are paused with
SIGSTOP, so that an idle Python server cannot take cycles from the one being
measured. Each configuration runs `--rounds` times, alternating.
"""

import argparse
import json
import os
import signal
import tempfile
import time
from pathlib import Path

import benchlib as b

SYSTEMS = ["direct", "bare-nodb", "bare-db", "magdi", "litellm"]
LABELS = {
    "direct": "fake provider alone",
    "bare-nodb": "bare poem proxy, no database",
    "bare-db": "bare poem proxy, one SQLite row",
    "magdi": "magdi /chat",
    "litellm": "LiteLLM proxy",
}
LITELLM_KEY = "sk-bench-only-on-loopback-0123456789"
USERS = 32
# Turns rotate over fresh conversations, 40 per user (1,280) per run: at this
# machine's rates a conversation gets some 10 to 20 turns in a 10-second run,
# so a turn carries the history of a chat of ordinary length. (With 8 per user
# they reached 100 turns and more, every turn carrying 200 earlier messages;
# benches/syscalls.sh measures that case.)
CONVERSATIONS_PER_USER = 40


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--with-litellm", action="store_true")
    p.add_argument("--litellm", default=os.environ.get("LITELLM_BIN", ""),
                   help="the litellm executable (from the venv)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--out", default=str(b.BENCHES / "results"))
    p.add_argument("--replot", metavar="JSON",
                   help="only remake the table and plot from a results JSON")
    return p.parse_args()


def pause(proc):
    os.killpg(proc.pid, signal.SIGSTOP)


def resume(proc):
    os.killpg(proc.pid, signal.SIGCONT)


def chat_body(stream):
    payload = {"model": "fake-model", "stream": stream,
               "messages": [{"role": "user", "content": "Write one pytest test for add(a, b)."}]}
    if stream:
        payload["stream_options"] = {"include_usage": True}
    return json.dumps(payload).encode()


def start_litellm(procs, litellm, provider_port, workdir):
    port = b.free_port()
    config = Path(workdir) / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: fake-model\n"
        "    litellm_params:\n"
        "      model: openai/fake-model\n"
        f"      api_base: http://{b.HOST}:{provider_port}/v1\n"
        "      api_key: none\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_KEY}\n"
    )
    started = time.perf_counter()
    proc = procs.start("litellm", [litellm, "--config", config, "--host", b.HOST,
                                   "--port", port, "--num_workers", "1"],
                       cpus=b.SUT_CPUS,
                       env={"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
                            "LITELLM_TELEMETRY": "False", "NO_PROXY": "*",
                            "HTTP_PROXY": "", "HTTPS_PROXY": ""})
    url = f"http://{b.HOST}:{port}"
    b.wait_until_answers(url + "/v1/chat/completions", timeout=180, method="POST",
                         body=chat_body(False), proc=proc,
                         headers={"content-type": "application/json",
                                  "authorization": f"Bearer {LITELLM_KEY}"})
    return proc, url, time.perf_counter() - started


def start_bare(procs, provider_port, workdir, no_db):
    port = b.free_port()
    argv = [b.BARE_PROXY, "--port", port, "--upstream", f"http://{b.HOST}:{provider_port}/v1",
            "--db", Path(workdir) / f"bare-{port}.db"]
    if no_db:
        argv.append("--no-db")
    started = time.perf_counter()
    proc = procs.start("bare-nodb" if no_db else "bare-db", argv, cpus=b.SUT_CPUS)
    url = f"http://{b.HOST}:{port}"
    b.wait_until_answers(url + "/v1/chat/completions", method="POST", body=chat_body(False),
                         headers={"content-type": "application/json"})
    return proc, url, time.perf_counter() - started


def main():
    args = parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.replot:
        saved = json.loads(Path(args.replot).read_text())
        names = [s for s in SYSTEMS if any(r["system"] == s for r in saved["runs"])]
        (out / "gateway.md").write_text(report(saved["facts"], saved["runs"], names))
        plot(saved["facts"], saved["runs"], names, out / "gateway.png")
        return
    workdir = tempfile.mkdtemp(prefix="magdi-gateway-")
    procs = b.Procs(workdir)
    b.log(f"work directory {workdir}")
    systems = [s for s in SYSTEMS if s != "litellm" or args.with_litellm]
    facts = {"machine": b.machine(), "date": b.today(), "seconds": args.seconds,
             "rounds": args.rounds, "startup_s": {}, "idle_rss_kb": {}, "load_rss_kb": {},
             "binary_bytes": os.path.getsize(b.MAGDI)}
    runs = []
    succeeded = False
    try:
        provider_port = b.free_port()
        provider = procs.start("fake-provider", [b.FAKE_PROVIDER, "--port", provider_port],
                               cpus=b.LOAD_CPUS)
        b.wait_until_answers(f"http://{b.HOST}:{provider_port}/v1/models")
        urls = {"direct": f"http://{b.HOST}:{provider_port}"}
        suts = {}

        for name, no_db in (("bare-nodb", True), ("bare-db", False)):
            proc, urls[name], facts["startup_s"][name] = start_bare(
                procs, provider_port, workdir, no_db)
            suts[name] = proc

        # Magdi: users made by its command line before it starts, each with an
        # allowance large enough never to run out (but checked on every turn).
        magdi = b.Magdi(procs, Path(workdir) / "magdi-data")
        b.log(f"creating {USERS} users with `magdi user create`")
        magdi.create_users(USERS)
        magdi_flags = ["--llm-base-url", f"http://{b.HOST}:{provider_port}/v1",
                       "--daily-token-limit", "1000000000000"]
        magdi.start(*magdi_flags)
        magdi.login_all()
        warm = magdi.conversations_file(Path(workdir) / "warm.txt", 1)
        token, conversation = Path(warm).read_text().split("\n")[0].split()
        body, content_type = b.multipart({"conversation_id": conversation,
                                          "category": "test_generation",
                                          "message": "Write one pytest test for add(a, b)."})
        chat_headers = {"authorization": f"Bearer {token}", "content-type": content_type}
        status, answer = b.request("POST", magdi.base + "/chat", body, chat_headers)
        assert status == 200, (status, answer)
        # Start-up measured on a restart: the data directory and users exist,
        # and the token of the first run stays valid (fixed --jwt-secret).
        magdi.stop()
        magdi.start(*magdi_flags, wait=False)
        facts["startup_s"]["magdi"] = b.wait_until_answers(
            magdi.base + "/chat", method="POST", body=body, headers=chat_headers)
        urls["magdi"] = magdi.base
        suts["magdi"] = magdi.proc

        if args.with_litellm:
            b.log("starting LiteLLM (takes a while)")
            proc, urls["litellm"], facts["startup_s"]["litellm"] = start_litellm(
                procs, args.litellm, provider_port, workdir)
            suts["litellm"] = proc

        time.sleep(2)
        for name, proc in suts.items():
            facts["idle_rss_kb"][name] = b.tree_rss_kb(proc.pid)
            pause(proc)
        facts["idle_rss_kb"]["direct"] = b.tree_rss_kb(provider.pid)

        paths = {"direct": "/v1/chat/completions", "bare-nodb": "/v1/chat/completions",
                 "bare-db": "/v1/chat/completions", "litellm": "/v1/chat/completions",
                 "magdi": "/chat"}
        for rnd in range(args.rounds):
            for stream in (False, True):
                for conc in (1, 32):
                    for name in systems:
                        env = {"BENCH_STREAM": "1" if stream else "0",
                               "BENCH_AUTH": f"Bearer {LITELLM_KEY}"}
                        lua = b.BENCHES / "wrk" / "openai-chat.lua"
                        proc = suts.get(name)
                        if proc is not None:
                            resume(proc)
                        if name == "magdi":
                            lua = b.BENCHES / "wrk" / "magdi-chat.lua"
                            env["BENCH_CONVERSATIONS"] = str(magdi.conversations_file(
                                Path(workdir) / "conversations.txt", CONVERSATIONS_PER_USER))
                        watched = proc if proc is not None else provider
                        with b.RssSampler(watched.pid, 0.2) as rss:
                            result = b.wrk(urls[name] + paths[name], lua, conc, args.seconds,
                                           env=env)
                        if proc is not None:
                            pause(proc)
                        result.update(system=name, stream=stream, conc=conc, round=rnd,
                                      rss_peak_kb=rss.peak)
                        runs.append(result)
                        b.log(f"round {rnd + 1} {'stream' if stream else 'json'} c={conc} "
                              f"{name}: {result['rps']:.0f} req/s p50 {result['p50_ms']:.2f} ms "
                              f"p99 {result['p99_ms']:.2f} ms errors {result['errors']} "
                              f"rss {rss.peak / 1024:.1f} MiB")
        for name in systems:
            peaks = [r["rss_peak_kb"] for r in runs if r["system"] == name and r["conc"] == 32]
            facts["load_rss_kb"][name] = max(peaks)
        succeeded = True
    finally:
        procs.stop_all()
        b.cleanup(workdir, succeeded)

    (out / "gateway.json").write_text(json.dumps({"facts": facts, "runs": runs}, indent=1))
    table = report(facts, runs, systems)
    (out / "gateway.md").write_text(table)
    print(table)
    plot(facts, runs, systems, out / "gateway.png")


def cell(runs, name, stream, conc):
    return [r for r in runs if r["system"] == name and r["stream"] == stream and r["conc"] == conc]


def med(values):
    return b.spread(values)[0]


def report(facts, runs, systems):
    lines = [f"Measured {facts['date']} on {facts['machine']}; {facts['rounds']} alternating "
             f"rounds of {facts['seconds']} s each; median (min–max).", ""]
    for stream in (False, True):
        lines.append(f"#### {'Streamed' if stream else 'Non-streamed'} chat")
        lines.append("")
        lines.append("| system | c | requests/s | p50 ms | p99 ms | p50 added at c=1 | "
                     "magdi ÷ this | errors |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for conc in (1, 32):
            magdi_rps = med([r["rps"] for r in cell(runs, "magdi", stream, conc)])
            direct_p50 = med([r["p50_ms"] for r in cell(runs, "direct", stream, 1)])
            for name in systems:
                rs = cell(runs, name, stream, conc)
                rps = [r["rps"] for r in rs]
                added = "–"
                if conc == 1 and name != "direct":
                    added = f"{med([r['p50_ms'] for r in rs]) - direct_p50:.3f} ms"
                ratio = "–" if name == "magdi" else f"{magdi_rps / med(rps):.2f}×"
                lines.append(
                    f"| {LABELS[name]} | {conc} | {b.fmt_spread(rps)} | "
                    f"{b.fmt_spread([r['p50_ms'] for r in rs])} | "
                    f"{b.fmt_spread([r['p99_ms'] for r in rs])} | {added} | {ratio} | "
                    f"{sum(r['errors'] for r in rs)} |")
        lines.append("")
    lines.append("| system | start to first answered request | idle RSS | peak RSS at c=32 |")
    lines.append("|---|---|---|---|")
    for name in systems:
        start = facts["startup_s"].get(name)
        start = "–" if start is None else f"{start * 1000:.0f} ms"
        lines.append(f"| {LABELS[name]} | {start} | {facts['idle_rss_kb'][name] / 1024:.1f} MiB | "
                     f"{facts['load_rss_kb'][name] / 1024:.1f} MiB |")
    lines.append("")
    lines.append("Start-up is from spawning the process to the first answered chat request "
                 "(magdi: a restart on its data directory, answering /chat). Release binary "
                 f"of magdi: {facts['binary_bytes'] / 1024 / 1024:.1f} MiB.")
    return "\n".join(lines) + "\n"


def plot(facts, runs, systems, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        b.log("matplotlib is missing; no plot")
        return
    groups = [(s, c) for s in (False, True) for c in (1, 32)]
    names = [f"{'stream' if s else 'json'}\nc={c}" for s, c in groups]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    width = 0.8 / len(systems)
    for i, name in enumerate(systems):
        for ax, key in ((axes[0], "rps"), (axes[1], "p99_ms")):
            meds, los, his = [], [], []
            for s, c in groups:
                m, lo, hi = b.spread([r[key] for r in cell(runs, name, s, c)])
                meds.append(m)
                los.append(m - lo)
                his.append(hi - m)
            xs = [g + (i - (len(systems) - 1) / 2) * width for g in range(len(groups))]
            ax.bar(xs, meds, width, yerr=[los, his], capsize=2, label=LABELS[name])
    for ax, title in ((axes[0], "throughput (requests/s, log)"), (axes[1], "p99 latency (ms, log)")):
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(names)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(systems), fontsize=8)
    fig.suptitle(f"Magdi gateway benchmark, {facts['date']}\n{facts['machine']}; "
                 f"median of {facts['rounds']} × {facts['seconds']} s, bars = min–max", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    b.log(f"plot written to {path}")


if __name__ == "__main__":
    main()
