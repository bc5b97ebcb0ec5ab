"""Load generators: wrk (preferred) or a Python fallback, both in a process of their own.

``load_generator()`` picks one per run (``BENCH_LOADGEN=auto|wrk|python``, default auto: wrk,
installed with apt-get when missing and we are root, else the Python one). Both run a fixed
number of requests over a fixed number of keep-alive connections, stop at a time limit in any
case, and report throughput and latency percentiles of the completed requests.

Requests are GETs by default; a POST benchmark gives ``method``, ``bodies`` (sent in turn, request
n gets ``bodies[n % len(bodies)]``) and ``unique_header`` (a header whose value is fresh for every
request, ``<run prefix>-<n>``, e.g. an ``Idempotency-Key``).

The Python generator is also this module's command line (``python -m bench.loadgen ...``).
"""

from __future__ import annotations

import argparse
import functools
import http.client
import itertools
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.harness import BenchmarkError, note


@dataclass(frozen=True)
class LoadResult:
    generator: str
    requests: int  # completed responses, whatever their status
    non_2xx: int
    socket_errors: int
    seconds: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def check(self, label: str, expected: int) -> None:
        """Refuse figures built on failures or on a run the time limit cut to a handful of requests."""
        if self.non_2xx or self.socket_errors:
            raise BenchmarkError(
                f"{label}: {self.non_2xx} non-2xx responses and {self.socket_errors} socket errors "
                f"in {self.requests} requests"
            )
        if self.requests < expected * 0.2:
            raise BenchmarkError(f"{label}: only {self.requests} of {expected} requests within the time limit")
        if self.requests < expected:
            note(f"{label}: the time limit cut the run at {self.requests} of {expected} requests")

    def summary(self) -> str:
        return (
            f"{self.requests} req in {self.seconds:.2f}s = {self.rps:.0f} req/s, "
            f"p50 {self.p50_ms:.2f} ms, p90 {self.p90_ms:.2f} ms, p99 {self.p99_ms:.2f} ms, max {self.max_ms:.2f} ms"
        )


def loopback_only(host: str) -> None:
    """Load goes to this machine only."""
    name = host.rsplit(":", 1)[0].strip("[]")
    if not (name.startswith("127.") or name in ("localhost", "::1")):
        raise BenchmarkError(f"refusing to send load to {host}: loopback addresses only")


@dataclass(frozen=True)
class Requests:
    """What each request is, beyond path and fixed headers (default: a bodiless GET)."""

    method: str = "GET"
    bodies: tuple[str, ...] = ()  # request n sends bodies[n % len(bodies)]
    unique_header: str | None = None  # a header with a fresh value per request: f"{prefix}-{n}"
    prefix: str = ""  # unique_header's prefix; make it unique per run (a key must never repeat)

    def body(self, n: int) -> str | None:
        return self.bodies[n % len(self.bodies)] if self.bodies else None

    def unique_value(self, n: int) -> str:
        return f"{self.prefix}-{n}"


GET = Requests()


class LoadGenerator:
    name = "base"

    def run(
        self,
        host: str,
        path: str,
        headers: Mapping[str, str],
        *,
        requests: int,
        concurrency: int,
        time_limit: float,
        spec: Requests = GET,
    ) -> LoadResult:
        raise NotImplementedError


# --- wrk -------------------------------------------------------------------------------------------

# One wrk thread, so this thread's count is the run's count. After LIMIT responses the thread
# stops and says so; wrk's main thread would still sleep out -d, so Wrk.run then sends it SIGINT,
# which wrk handles by ending the run at once and reporting (duration = start to that point).
_WRK_SCRIPT = """\
local limit = 0
local seen = 0
init = function(args) limit = tonumber(args[1]) end
response = function(status, headers, body)
  seen = seen + 1
  if seen == limit then
    io.stdout:write("LIMIT-REACHED\\n")
    io.stdout:flush()
    wrk.thread:stop()
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d " ..
    "mean_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


# Added to the script when the requests are not plain GETs: one thread, so a counter numbers them.
_WRK_REQUEST = """\
local method = %(method)s
local bodies = {%(bodies)s}
local unique = %(unique)s
local prefix = %(prefix)s
local sent = 0
local hdrs = nil
request = function()
  if hdrs == nil then
    hdrs = {}
    for k, v in pairs(wrk.headers) do hdrs[k] = v end
  end
  local body = nil
  if #bodies > 0 then body = bodies[(sent %% #bodies) + 1] end
  if unique then hdrs[unique] = prefix .. "-" .. sent end
  sent = sent + 1
  return wrk.format(method, nil, hdrs, body)
end
"""


def _lua_string(value: str | None) -> str:
    if value is None:
        return "nil"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def _wrk_script(spec: Requests) -> str:
    if spec == GET:
        return _WRK_SCRIPT
    request = _WRK_REQUEST % {
        "method": _lua_string(spec.method),
        "bodies": ", ".join(_lua_string(b) for b in spec.bodies),
        "unique": _lua_string(spec.unique_header),
        "prefix": _lua_string(spec.prefix),
    }
    return request + _WRK_SCRIPT


class Wrk(LoadGenerator):
    name = "wrk"

    def __init__(self, binary: str) -> None:
        self.binary = binary

    def run(
        self,
        host: str,
        path: str,
        headers: Mapping[str, str],
        *,
        requests: int,
        concurrency: int,
        time_limit: float,
        spec: Requests = GET,
    ) -> LoadResult:
        loopback_only(host)
        args = [self.binary, "-t1", f"-c{concurrency}", f"-d{math.ceil(time_limit)}s", "--timeout", "5s"]
        for key, value in headers.items():
            args += ["-H", f"{key}: {value}"]
        with tempfile.TemporaryDirectory(prefix="clinic-bench-wrk-") as tmp:
            script = Path(tmp) / "bounded.lua"
            script.write_text(_wrk_script(spec))
            args += ["-s", str(script), f"http://{host}{path}", "--", str(requests)]
            output, returncode = self._drive(args, time_limit + 15)
        match = re.search(r"^BENCH (.*)$", output, re.MULTILINE)
        if returncode != 0 or match is None:
            raise BenchmarkError(f"wrk exited {returncode}: {output.strip()[-2000:]}")
        v = {k: int(x) for k, x in (kv.split("=") for kv in match.group(1).split())}
        return LoadResult(
            generator=self.name,
            requests=v["requests"],
            non_2xx=v["status"],
            socket_errors=v["connect"] + v["read"] + v["write"] + v["timeout"],
            seconds=v["duration_us"] / 1e6,
            mean_ms=v["mean_us"] / 1e3,
            p50_ms=v["p50_us"] / 1e3,
            p90_ms=v["p90_us"] / 1e3,
            p99_ms=v["p99_us"] / 1e3,
            max_ms=v["max_us"] / 1e3,
        )

    @staticmethod
    def _drive(args: list[str], timeout: float) -> tuple[str, int]:
        """Run wrk, interrupting it (SIGINT: report now) once the script says the count is reached."""
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        lines: list[str] = []
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if line.startswith("LIMIT-REACHED") and proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
            returncode = proc.wait()
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if returncode < 0:
            raise BenchmarkError(f"wrk killed after {timeout:.0f}s (signal {-returncode})")
        return "".join(lines), returncode


def _install_wrk() -> str | None:
    """apt-get install wrk (Debian's package), as root only; None when that is not possible."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"]
    note("wrk missing: apt-get install wrk")
    for step in (install, ["apt-get", "update", "-qq"], install):
        try:
            ok = subprocess.run(step, env=env, capture_output=True, text=True, timeout=180).returncode == 0
        except subprocess.TimeoutExpired:
            ok = False
        if ok and step is install:
            break
    return shutil.which("wrk")


# --- Python fallback -----------------------------------------------------------------------------


class PythonLoad(LoadGenerator):
    """Threads with keep-alive http.client connections, in a child process (``python -m bench.loadgen``)."""

    name = "python"

    def run(
        self,
        host: str,
        path: str,
        headers: Mapping[str, str],
        *,
        requests: int,
        concurrency: int,
        time_limit: float,
        spec: Requests = GET,
    ) -> LoadResult:
        loopback_only(host)
        args = [sys.executable, "-m", "bench.loadgen", "--host", host, "--path", path]
        args += ["--requests", str(requests), "--concurrency", str(concurrency), "--time-limit", str(time_limit)]
        for key, value in headers.items():
            args += ["--header", f"{key}: {value}"]
        args += ["--method", spec.method]
        for body in spec.bodies:
            args += ["--body", body]
        if spec.unique_header:
            args += ["--unique-header", spec.unique_header, "--prefix", spec.prefix]
        try:
            done = subprocess.run(
                args,
                capture_output=True,
                text=True,
                timeout=time_limit + 15,
                cwd=Path(__file__).resolve().parent.parent,
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchmarkError(f"python load generator did not stop within {time_limit + 15:.0f}s") from exc
        if done.returncode != 0:
            raise BenchmarkError(f"python load generator exited {done.returncode}: {done.stderr.strip()[-2000:]}")
        return LoadResult(**json.loads(done.stdout))


def _percentile(ordered: list[float], pct: float) -> float:
    """Nearest rank, as wrk's histogram reports it."""
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def python_load(
    host: str,
    path: str,
    headers: Mapping[str, str],
    *,
    requests: int,
    concurrency: int,
    time_limit: float,
    spec: Requests = GET,
) -> LoadResult:
    loopback_only(host)
    tickets = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    counts = {"non_2xx": 0, "socket_errors": 0}
    start = time.perf_counter()
    deadline = start + time_limit

    def client() -> None:
        mine: list[float] = []
        non_2xx = errors = 0
        conn = http.client.HTTPConnection(host, timeout=5)
        while (n := next(tickets)) < requests and time.perf_counter() < deadline:
            sending = dict(headers)
            if spec.unique_header:
                sending[spec.unique_header] = spec.unique_value(n)
            t0 = time.perf_counter()
            try:
                conn.request(spec.method, path, body=spec.body(n), headers=sending)
                resp = conn.getresponse()
                resp.read()
            except (OSError, http.client.HTTPException):
                errors += 1
                conn.close()
                conn = http.client.HTTPConnection(host, timeout=5)
                continue
            mine.append(time.perf_counter() - t0)
            if not 200 <= resp.status < 300:
                non_2xx += 1
        conn.close()
        with lock:
            latencies.extend(mine)
            counts["non_2xx"] += non_2xx
            counts["socket_errors"] += errors

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(time_limit + 10)
    seconds = time.perf_counter() - start
    ordered = sorted(x * 1000 for x in latencies)
    return LoadResult(
        generator="python",
        requests=len(ordered),
        non_2xx=counts["non_2xx"],
        socket_errors=counts["socket_errors"],
        seconds=seconds,
        mean_ms=sum(ordered) / len(ordered) if ordered else 0.0,
        p50_ms=_percentile(ordered, 50),
        p90_ms=_percentile(ordered, 90),
        p99_ms=_percentile(ordered, 99),
        max_ms=ordered[-1] if ordered else 0.0,
    )


# --- choice --------------------------------------------------------------------------------------


@functools.cache
def load_generator() -> LoadGenerator:
    """The generator for this whole run (every benchmark, ours and baseline alike)."""
    choice = os.environ.get("BENCH_LOADGEN", "auto")
    if choice not in ("auto", "wrk", "python"):
        raise BenchmarkError(f"BENCH_LOADGEN must be auto, wrk or python, not {choice!r}")
    if choice != "python":
        binary = shutil.which("wrk") or _install_wrk()
        if binary:
            return Wrk(binary)
        if choice == "wrk":
            raise BenchmarkError("BENCH_LOADGEN=wrk but wrk is not installed and could not be installed")
        note("wrk unavailable: falling back to the Python load generator (it uses more CPU itself)")
    return PythonLoad()


def _main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description="Python HTTP load generator")
    parser.add_argument("--host", required=True, help="HOST:PORT (loopback)")
    parser.add_argument("--path", required=True)
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--time-limit", type=float, required=True)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body", action="append", default=[], help="request body, repeatable: sent in turn")
    parser.add_argument("--unique-header", default=None, help="header given a fresh PREFIX-N value per request")
    parser.add_argument("--prefix", default="")
    args = parser.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    spec = Requests(method=args.method, bodies=tuple(args.body), unique_header=args.unique_header, prefix=args.prefix)
    result = python_load(
        args.host,
        args.path,
        headers,
        requests=args.requests,
        concurrency=args.concurrency,
        time_limit=args.time_limit,
        spec=spec,
    )
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    _main()
