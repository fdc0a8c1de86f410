"""Issue 4's benchmark: the time magdi takes to build the ZIP of a workspace of
5,000 files and 500 MiB, side by side with `zip -r` on the same folder in the
same run; download throughput; and peak resident memory during the download,
for that ZIP and for one ten times smaller.

The workspace is uploaded once as a stored zip (unpacked by magdi). A turn
builds an artifact only when the reply proposes a file, so the fake provider
answers the model `fake-files` with a fenced block `path=bench/turn-N.txt`
and `fake-model` with plain text. Both turns build the same prompt; the
difference of their times is what the file and the ZIP cost. The files hold
bytes from a 16-symbol alphabet including NUL: deflate halves them, and the
prompt builder leaves them out as binary, as it would images or archives.
Run it through benches/artifacts.sh.
"""

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import benchlib as b

WORKSPACES = {"500MiB": (5000, 50), "50MiB": (500, 5)}  # files, folders
FILE_BYTES = 100 * 1024 + 205  # 5,000 of them make 500 MiB
TABLE = bytes((i % 16) * 11 if i % 16 else 0 for i in range(256))


def make_folder(root, files, folders):
    root.mkdir(parents=True)
    for i in range(files):
        folder = root / f"module{i % folders:02d}"
        folder.mkdir(exist_ok=True)
        (folder / f"data{i:05d}.dat").write_bytes(os.urandom(FILE_BYTES).translate(TABLE))


def chat(magdi, token, conversation, model):
    body, content_type = b.multipart({"conversation_id": conversation, "llm_model": model,
                                      "category": "test_generation",
                                      "message": "Add a file, please."})
    started = time.perf_counter()
    status, answer = b.request("POST", magdi.base + "/chat", body,
                               {"authorization": f"Bearer {token}",
                                "content-type": content_type}, timeout=600)
    seconds = time.perf_counter() - started
    if status != 200:
        raise RuntimeError(f"/chat answered {status}: {answer[:300]}")
    return seconds, json.loads(answer)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=str(b.BENCHES / "results"))
    args = p.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="magdi-artifacts-"))
    procs = b.Procs(workdir)
    facts = {"machine": b.machine(), "date": b.today(), "workspaces": {}}
    runs = []
    succeeded = False
    try:
        reply = workdir / "reply.txt"
        reply.write_text("Here is a file.\n\n```text path=bench/turn-{n}.txt\nturn {n}\n```\n")
        provider_port = b.free_port()
        procs.start("fake-provider", [b.FAKE_PROVIDER, "--port", provider_port, "--reply-file",
                                      reply, "--reply-file-model", "fake-files"])
        b.wait_until_answers(f"http://{b.HOST}:{provider_port}/v1/models")
        magdi = b.Magdi(procs, workdir / "data")
        magdi.create_users(1)
        magdi.start("--llm-base-url", f"http://{b.HOST}:{provider_port}/v1",
                    "--max-upload-mb", "1024", "--max-request-mb", "2048",
                    "--max-workspace-mb", "4096", "--daily-token-limit", "0", cpus=None)
        token = magdi.login_all()[0]

        conversations = {}
        for name, (files, folders) in WORKSPACES.items():
            folder = workdir / f"src-{name}"
            b.log(f"making the {name} workspace: {files} files")
            make_folder(folder, files, folders)
            upload = workdir / f"upload-{name}.zip"
            subprocess.run(["zip", "-0", "-r", "-q", upload, "."], cwd=folder, check=True,
                           timeout=600)
            conversation = magdi.start_conversation(token)
            out = subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
                 "-H", f"authorization: Bearer {token}", "-F", f"conversation_id={conversation}",
                 "-F", f"files[]=@{upload}", magdi.base + "/conversation/upload"],
                capture_output=True, text=True, timeout=900, check=True)
            status, seconds = out.stdout.split()
            assert status == "200", out.stdout
            upload.unlink()
            facts["workspaces"][name] = {"files": files,
                                         "bytes": files * FILE_BYTES,
                                         "upload_zip_s": float(seconds)}
            b.log(f"uploaded {name} as a zip in {float(seconds):.1f} s")
            conversations[name] = (conversation, folder)

        artifacts = {}
        for rnd in range(args.rounds):
            for name, (conversation, folder) in conversations.items():
                plain_s, _ = chat(magdi, token, conversation, "fake-model")
                before = b.proc_status(magdi.proc.pid, "VmRSS")
                with b.RssSampler(magdi.proc.pid, 0.01) as sampler:
                    files_s, answer = chat(magdi, token, conversation, "fake-files")
                artifact = answer["artifact"]
                artifacts[name] = artifact
                target = workdir / "zip-r.zip"
                started = time.perf_counter()
                subprocess.run(["zip", "-r", "-q", target, "."], cwd=folder, check=True,
                               timeout=900)
                zip_s = time.perf_counter() - started
                zip_bytes = target.stat().st_size
                target.unlink()
                r = {"kind": "build", "workspace": name, "round": rnd, "plain_turn_s": plain_s,
                     "zip_turn_s": files_s, "magdi_zip_s": files_s - plain_s,
                     "magdi_zip_bytes": artifact["size"], "zip_r_s": zip_s,
                     "zip_r_bytes": zip_bytes, "rss_before_kb": before,
                     "rss_peak_kb": sampler.peak}
                runs.append(r)
                b.log(f"round {rnd + 1} {name}: plain turn {plain_s:.3f} s, turn with ZIP "
                      f"{files_s:.3f} s ({artifact['size'] / 2**20:.0f} MiB), zip -r {zip_s:.3f} s "
                      f"({zip_bytes / 2**20:.0f} MiB), RSS {before / 1024:.0f} → "
                      f"{sampler.peak / 1024:.0f} MiB")

            for name, artifact in artifacts.items():
                url = magdi.base + artifact["download_url"]
                before = b.proc_status(magdi.proc.pid, "VmRSS")
                with b.RssSampler(magdi.proc.pid, 0.01) as sampler:
                    out = subprocess.run(
                        ["curl", "-s", "-o", "/dev/null", "-w",
                         "%{http_code} %{size_download} %{time_total}",
                         "-H", f"authorization: Bearer {token}", url],
                        capture_output=True, text=True, timeout=600, check=True)
                status, size, seconds = out.stdout.split()
                r = {"kind": "download", "workspace": name, "round": rnd,
                     "status": int(status), "bytes": int(size), "seconds": float(seconds),
                     "rss_before_kb": before, "rss_peak_kb": sampler.peak}
                r["mib_per_s"] = r["bytes"] / 2**20 / r["seconds"]
                runs.append(r)
                b.log(f"round {rnd + 1} download {name}: {r['bytes'] / 2**20:.0f} MiB in "
                      f"{r['seconds']:.3f} s ({r['mib_per_s']:.0f} MiB/s), RSS "
                      f"{before / 1024:.1f} → {sampler.peak / 1024:.1f} MiB")
        succeeded = True
    finally:
        procs.stop_all()
        b.cleanup(workdir, succeeded)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "artifacts.json").write_text(json.dumps({"facts": facts, "runs": runs}, indent=1))
    lines = [f"Measured {facts['date']} on {facts['machine']}; magdi on both cores; "
             f"{args.rounds} rounds; median (min–max).", "",
             "| workspace | magdi: turn with ZIP − plain turn | `zip -r` | magdi ÷ zip -r | "
             "ZIP size magdi / zip -r | RSS before → peak while building |",
             "|---|---|---|---|---|---|"]
    for name, w in facts["workspaces"].items():
        rs = [r for r in runs if r["kind"] == "build" and r["workspace"] == name]
        ratios = [r["magdi_zip_s"] / r["zip_r_s"] for r in rs]
        lines.append(
            f"| {w['files']:,} files, {w['bytes'] / 2**20:.0f} MiB | "
            f"{b.fmt_spread([r['magdi_zip_s'] for r in rs], ' s')} | "
            f"{b.fmt_spread([r['zip_r_s'] for r in rs], ' s')} | {b.fmt_spread(ratios)} | "
            f"{rs[-1]['magdi_zip_bytes'] / 2**20:.0f} / {rs[-1]['zip_r_bytes'] / 2**20:.0f} MiB | "
            f"{b.fmt_spread([r['rss_before_kb'] / 1024 for r in rs])} → "
            f"{b.fmt_spread([r['rss_peak_kb'] / 1024 for r in rs], ' MiB')} |")
    lines += ["", "| artifact | download time | throughput | RSS before | peak RSS during "
              "download |", "|---|---|---|---|---|"]
    for name in facts["workspaces"]:
        rs = [r for r in runs if r["kind"] == "download" and r["workspace"] == name]
        lines.append(
            f"| {rs[-1]['bytes'] / 2**20:.0f} MiB ZIP | "
            f"{b.fmt_spread([r['seconds'] for r in rs], ' s')} | "
            f"{b.fmt_spread([r['mib_per_s'] for r in rs], ' MiB/s')} | "
            f"{b.fmt_spread([r['rss_before_kb'] / 1024 for r in rs], ' MiB')} | "
            f"{b.fmt_spread([r['rss_peak_kb'] / 1024 for r in rs], ' MiB')} |")
    lines += ["", "Uploading the workspace as a stored zip (unpacked by magdi): " + ", ".join(
        f"{n} {w['upload_zip_s']:.1f} s" for n, w in facts["workspaces"].items()) + "."]
    table = "\n".join(lines) + "\n"
    (out / "artifacts.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
