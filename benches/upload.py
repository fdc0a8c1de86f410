"""Issue 3's benchmark: peak resident memory while uploading a 200 MB file,
side by side with a 50 MB one, which must not differ by the files' sizes.

Each upload goes to a freshly started server (so that its VmHWM, the peak
resident memory since start, belongs to that upload alone) and into a new
conversation, with curl streaming the file from disk. Run it through
benches/upload.sh.
"""

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import benchlib as b

SIZES_MB = (50, 200)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=str(b.BENCHES / "results"))
    args = p.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="magdi-upload-"))
    procs = b.Procs(workdir)
    facts = {"machine": b.machine(), "date": b.today()}
    runs = []
    succeeded = False
    try:
        files = {}
        for size in SIZES_MB:
            path = workdir / f"upload-{size}mb.bin"
            with open(path, "wb") as f:
                for _ in range(size):
                    f.write(b.os.urandom(1024 * 1024))
            files[size] = path
        magdi = b.Magdi(procs, workdir / "data")
        magdi.create_users(1)
        flags = ["--max-upload-mb", "256", "--max-request-mb", "512",
                 "--max-workspace-mb", "100000"]
        for rnd in range(args.rounds):
            for size in SIZES_MB:
                magdi.start(*flags, cpus=None)
                magdi.login_all()
                conversation = magdi.start_conversation(magdi.tokens[0])
                time.sleep(0.5)
                idle = b.proc_status(magdi.proc.pid, "VmRSS")
                with b.RssSampler(magdi.proc.pid, 0.01) as sampler:
                    out = subprocess.run(
                        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
                         "-H", f"authorization: Bearer {magdi.tokens[0]}",
                         "-F", f"conversation_id={conversation}",
                         "-F", f"files[]=@{files[size]};filename=big-{size}.bin",
                         magdi.base + "/conversation/upload"],
                        capture_output=True, text=True, timeout=600, check=True)
                status, seconds = out.stdout.split()
                hwm = b.proc_status(magdi.proc.pid, "VmHWM")
                magdi.stop()
                r = {"size_mb": size, "round": rnd, "status": int(status),
                     "seconds": float(seconds), "idle_kb": idle, "hwm_kb": hwm,
                     "sampled_peak_kb": sampler.peak}
                r["mb_per_s"] = size / r["seconds"]
                runs.append(r)
                b.log(f"round {rnd + 1} {size} MB: status {status} in {r['seconds']:.2f} s "
                      f"({r['mb_per_s']:.0f} MiB/s), idle {idle / 1024:.1f} MiB, "
                      f"peak {hwm / 1024:.1f} MiB")
        succeeded = True
    finally:
        procs.stop_all()
        b.cleanup(workdir, succeeded)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "upload.json").write_text(json.dumps({"facts": facts, "runs": runs}, indent=1))
    lines = [f"Measured {facts['date']} on {facts['machine']}; one file of random bytes per "
             f"request with curl, a fresh server for each upload, {args.rounds} rounds; "
             "median (min–max).", "",
             "| file | status | upload time | throughput | idle RSS | peak RSS (VmHWM) | "
             "peak − idle |", "|---|---|---|---|---|---|---|"]
    for size in SIZES_MB:
        rs = [r for r in runs if r["size_mb"] == size]
        lines.append(
            f"| {size} MiB | {','.join(sorted({str(r['status']) for r in rs}))} | "
            f"{b.fmt_spread([r['seconds'] for r in rs], ' s')} | "
            f"{b.fmt_spread([r['mb_per_s'] for r in rs], ' MiB/s')} | "
            f"{b.fmt_spread([r['idle_kb'] / 1024 for r in rs], ' MiB')} | "
            f"{b.fmt_spread([r['hwm_kb'] / 1024 for r in rs], ' MiB')} | "
            f"{b.fmt_spread([(r['hwm_kb'] - r['idle_kb']) / 1024 for r in rs], ' MiB')} |")
    table = "\n".join(lines) + "\n"
    (out / "upload.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
