"""Shared pieces of Magdi's benchmark scripts.

Everything here starts processes on 127.0.0.1 only, remembers each one by its
process id and stops exactly those (`Procs.stop_all`), and bounds every wait
loop by a deadline. Standard library only, so that the scripts run with the
system Python; the plots need matplotlib from the virtual environment that
the shell wrappers make.
"""

import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCHES = REPO / "benches"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", "/work/target-bench"))
RELEASE = TARGET / "release"
# MAGDI_BENCH_BINARY measures another build of magdi (for example one kept from
# an earlier commit) against the same harness.
MAGDI = Path(os.environ.get("MAGDI_BENCH_BINARY", RELEASE / "magdi"))
FAKE_PROVIDER = RELEASE / "fake-provider"
BARE_PROXY = RELEASE / "bare-proxy"
HOST = "127.0.0.1"
PASSWORD = "bench password 123"

# The system under test runs on core 0; wrk and the fake provider on core 1.
SUT_CPUS = os.environ.get("BENCH_SUT_CPUS", "0")
LOAD_CPUS = os.environ.get("BENCH_LOAD_CPUS", "1")


def _exit_on_signal(signum, _frame):
    # Turns SIGTERM (and SIGINT, which a backgrounded shell would ignore) into
    # an exit that runs the scripts' `finally`, so that they stop what they started.
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _exit_on_signal)
signal.signal(signal.SIGINT, _exit_on_signal)


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Procs:
    """The processes a script started, stopped by their ids and only those."""

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.started = []

    def start(self, name, argv, cpus=None, env=None):
        if cpus is not None:
            argv = ["taskset", "-c", cpus, *map(str, argv)]
        full_env = dict(os.environ)
        full_env.update(env or {})
        out = open(self.workdir / f"{name}.log", "ab")
        proc = subprocess.Popen(
            [str(a) for a in argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            start_new_session=True,
        )
        out.close()
        proc.bench_name = name
        self.started.append(proc)
        return proc

    def stop(self, proc, grace=15.0):
        # Each process was started in its own session, so its process group id
        # is its own id: this reaches the workers it forked and nothing else.
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGCONT)
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if proc in self.started:
            self.started.remove(proc)

    def stop_all(self):
        for proc in list(reversed(self.started)):
            self.stop(proc)


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def request(method, url, body=None, headers=None, timeout=30):
    """One HTTP request; answers (status, bytes). Only 127.0.0.1 is allowed."""
    assert url.startswith(f"http://{HOST}:"), url
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def json_request(method, url, payload=None, token=None, timeout=30):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    body = None if payload is None else json.dumps(payload).encode()
    status, data = request(method, url, body, headers, timeout)
    try:
        return status, json.loads(data)
    except ValueError:
        return status, data


def multipart(fields):
    boundary = "benchboundary" + uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        )
    parts.append(f"--{boundary}--\r\n")
    return "".join(parts).encode(), f"multipart/form-data; boundary={boundary}"


def wait_until_answers(url, timeout=60.0, method="GET", body=None, headers=None, proc=None):
    """Seconds until `url` first answers 2xx; polls every millisecond or so.
    Gives up early when `proc` (the server being waited for) has exited."""
    started = time.perf_counter()
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
        try:
            status, _ = request(method, url, body, headers, timeout=5)
            if 200 <= status < 300:
                return time.perf_counter() - started
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.001)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def proc_status(pid, field):
    """A field of /proc/PID/status in KiB (VmRSS, VmHWM), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def tree_rss_kb(pid):
    """Resident memory of a process and its children (LiteLLM forks workers)."""
    total = proc_status(pid, "VmRSS") or 0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        total += tree_rss_kb(int(child))
    return total


class RssSampler:
    """Samples a process tree's resident memory while a measurement runs."""

    def __init__(self, pid, interval=0.05):
        self.pid, self.interval = pid, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_kb(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)


REPORT_LUA = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
"""


def wrk(url, lua_file, connections, seconds, env=None, cpus=LOAD_CPUS, threads=1):
    """Runs wrk with a Lua script (the report function is added); returns a dict."""
    assert url.startswith(f"http://{HOST}:"), url
    script = Path(lua_file).read_text() + "\n" + REPORT_LUA
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
        path = f.name
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
            "--timeout", "10s", "-s", path, url]
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        out = subprocess.run(argv, capture_output=True, text=True, env=full_env,
                             timeout=seconds + 60, check=False)
    finally:
        os.unlink(path)
    match = re.search(r"^WRKJSON (.*)$", out.stdout, re.M)
    if not match:
        raise RuntimeError(f"wrk gave no report: {out.stdout}\n{out.stderr}")
    r = json.loads(match.group(1))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["errors"] = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    for k in ("p50", "p90", "p99", "mean", "max"):
        r[k + "_ms"] = r[k + "_us"] / 1000.0
    return r


def spread(values):
    """(median, min, max) of a list of numbers."""
    return statistics.median(values), min(values), max(values)


def fmt_num(x):
    if x >= 1000:
        return f"{x:,.0f}"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_spread(values, unit=""):
    med, lo, hi = spread(values)
    return f"{fmt_num(med)}{unit} ({fmt_num(lo)}–{fmt_num(hi)})"


def machine():
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    load = open("/proc/loadavg").read().split()[0]
    return (f"{model}, {os.cpu_count()} cores, {mem_kb // 1024 // 1024} GiB, "
            f"Linux {platform.release()}, load average {load} at the start")


def today():
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


class Magdi:
    """A magdi server on a data directory, with users created by its command line."""

    def __init__(self, procs, data_dir, port=None):
        self.procs = procs
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.base = f"http://{HOST}:{self.port}"
        self.proc = None
        self.tokens = []

    def create_users(self, count, limit=None):
        """Creates users with the `magdi user` command (server not running)."""
        assert self.proc is None, "users are created before the server starts"
        emails = []
        for i in range(count):
            email = f"bench{i}@example.com"
            subprocess.run([str(MAGDI), "user", "--data-dir", str(self.data_dir), "create",
                            "--email", email, "--password-stdin"], input=PASSWORD.encode(),
                           check=True, capture_output=True, timeout=60)
            if limit is not None:
                subprocess.run([str(MAGDI), "user", "--data-dir", str(self.data_dir),
                                "set-limit", "--email", email, "--tokens", str(limit)],
                               check=True, capture_output=True, timeout=60)
            emails.append(email)
        self.emails = emails
        return emails

    def start(self, *extra, cpus=SUT_CPUS, env=None, wait=True):
        argv = [MAGDI, "serve", "--bind", f"{HOST}:{self.port}",
                "--data-dir", self.data_dir, "--jwt-secret", "bench-secret-not-for-production",
                *extra]
        self.started_at = time.perf_counter()
        self.proc = self.procs.start(f"magdi-{self.port}", argv, cpus=cpus,
                                     env={"MAGDI_LOG": "warn", "RUST_LOG": "warn", **(env or {})})
        if wait:
            self.startup_s = wait_until_answers(self.base + "/version", timeout=60,
                                                proc=self.proc)
        return self.proc

    def stop(self):
        if self.proc is not None:
            self.procs.stop(self.proc)
            self.proc = None

    def login_all(self):
        self.tokens = []
        for email in self.emails:
            status, body = json_request("POST", self.base + "/login",
                                        {"email": email, "password": PASSWORD})
            if status != 200:
                raise RuntimeError(f"login failed: {status} {body}")
            self.tokens.append(body["token"])
        return self.tokens

    def start_conversation(self, token, category="test_generation"):
        status, body = json_request("POST", self.base + "/start_conversation",
                                    {"category": category}, token=token)
        if status != 200:
            raise RuntimeError(f"start_conversation failed: {status} {body}")
        return body["conversation_id"]

    def conversations_file(self, path, per_user, category="test_generation"):
        """Fresh conversations, `per_user` for every user, interleaved by user
        so that rotating through the lines spreads the turns over the users."""
        lines = []
        for _ in range(per_user):
            for token in self.tokens:
                lines.append(f"{token} {self.start_conversation(token, category)}")
        Path(path).write_text("\n".join(lines) + "\n")
        return path


def cleanup(workdir, succeeded):
    """Removes a script's work directory after a run that went well; keeps it
    (with the servers' logs) after one that failed, or with MAGDI_BENCH_KEEP=1."""
    import shutil

    if succeeded and os.environ.get("MAGDI_BENCH_KEEP") != "1":
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        log(f"kept {workdir} (logs of the servers are there)")
