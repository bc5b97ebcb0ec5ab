"""Shared pieces for the benchmarks: figures, a throwaway PostgreSQL database, gunicorn servers.

Everything that starts something is a context manager, so a failure or Ctrl-C (or SIGTERM,
see ``handle_termination``) still stops the servers and drops the database.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")

#: the one gunicorn configuration every server of every benchmark runs with (ours and baseline alike).
#: 2 processes for 2 cores; 4 threads each so a worker can overlap its database round trips, and
#: keep-alive so the load generator's connections are reused as a real client's would be.
GUNICORN_WORKERS = 2
GUNICORN_THREADS = 4
GUNICORN_ARGS: tuple[str, ...] = (
    "--workers",
    str(GUNICORN_WORKERS),
    "--worker-class",
    "gthread",
    "--threads",
    str(GUNICORN_THREADS),
    "--keep-alive",
    "5",
    "--timeout",
    "30",
    "--graceful-timeout",
    "5",
    "--log-level",
    "warning",
)


class BenchmarkError(RuntimeError):
    """A benchmark could not produce a trustworthy figure (setup failed, errors under load, ...)."""


def note(message: str) -> None:
    """Progress and diagnostics: stderr, so stdout carries only the figure lines."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Figure:
    """One compared number; ratio is always ours / baseline (see README for which way is better)."""

    name: str
    ours: float
    baseline: float
    decimals: int = 1

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("nan")

    def line(self) -> str:
        d = self.decimals
        return f"{self.name} ours={self.ours:.{d}f} baseline={self.baseline:.{d}f} ratio={self.ratio:.3f}"


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def handle_termination() -> None:
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt so every ``finally`` and context manager runs."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)


def cpu_busy(seconds: float = 0.5) -> float | None:
    """Share of all CPUs busy over a short sample (Linux /proc/stat); None where unknown."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1 - (idle1 - idle0) / (total1 - total0) if total1 > total0 else None


def warn_if_busy() -> None:
    busy = cpu_busy()
    if busy is not None and busy > 0.15:
        note(f"warning: the machine is already {busy:.0%} busy before the benchmark; figures will be noisy")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tool(name: str) -> str:
    """A console script of this virtualenv (``clinic``), else one on PATH."""
    candidate = BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise BenchmarkError(f"{name} not found next to {sys.executable} nor on PATH")
    return found


def run_command(args: Sequence[str], *, env: Mapping[str, str], stdin: str | None = None, timeout: float = 180) -> str:
    """Run a setup command; its stdout, or BenchmarkError with its stderr."""
    try:
        done = subprocess.run(
            list(args), input=stdin, env=dict(env), cwd=REPO, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchmarkError(f"{' '.join(args[:3])} timed out after {timeout}s") from exc
    if done.returncode != 0:
        raise BenchmarkError(f"{' '.join(args[:3])} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done.stdout


# --- PostgreSQL ----------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A fresh, empty database; yields its plain postgresql:// URL and drops it afterwards."""
    import psycopg

    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        raise BenchmarkError(f"cannot create a database through {PG_ADMIN_URL}: {exc}") from exc
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        try:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except psycopg.Error as exc:
            note(f"could not drop database {name}: {exc}")


def scalar(url: str, sql: str) -> Any:
    import psycopg

    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute(sql).fetchone()
    return row[0] if row else None


# --- the app in this process ---------------------------------------------------------------------


def bench_app(url: str, instance: Path) -> Any:
    """The app factory's app on ``url`` with ``instance`` as its instance folder (for setup through the
    services, clinic.fixtures, and for in-process measurement); the environment is left as it was."""
    from clinic import create_app
    from clinic.core.db import normalise_database_url

    saved = os.environ.get("CLINIC_INSTANCE_PATH")
    os.environ["CLINIC_INSTANCE_PATH"] = str(instance)
    try:
        return create_app({"SQLALCHEMY_DATABASE_URI": normalise_database_url(url)})
    finally:
        if saved is None:
            os.environ.pop("CLINIC_INSTANCE_PATH", None)
        else:
            os.environ["CLINIC_INSTANCE_PATH"] = saved


# --- gunicorn --------------------------------------------------------------------------------------


class Server:
    """One gunicorn master (and its workers) in a process group of its own, logging to a file."""

    def __init__(self, label: str, app_spec: str, *, env: Mapping[str, str], log_dir: Path) -> None:
        self.label = label
        self.app_spec = app_spec
        self.env = dict(env)
        self.log_path = log_dir / f"{label}.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [sys.executable, "-m", "gunicorn", *GUNICORN_ARGS, "--bind", self.host, "--chdir", str(REPO)]
        if Path("/dev/shm").is_dir():
            args += ["--worker-tmp-dir", "/dev/shm"]
        args.append(self.app_spec)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                args,
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() reaches the workers too
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, path: str, headers: Mapping[str, str], *, timeout: float = 90) -> tuple[int, bytes]:
        """Poll until ``path`` answers (any status); returns that first answer."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise BenchmarkError(f"{self.label} server exited during startup:\n{self.log_tail()}")
            try:
                return get(self.host, path, headers, timeout=5)
            except OSError:
                time.sleep(0.1)
        raise BenchmarkError(f"{self.label} server not answering after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # graceful: the master stops its workers
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                note(f"{self.label} server ignored SIGTERM; killing its process group")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group we created, if any
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        self.proc = None


@contextlib.contextmanager
def gunicorn(label: str, app_spec: str, *, env: Mapping[str, str], log_dir: Path) -> Iterator[Server]:
    server = Server(label, app_spec, env=env, log_dir=log_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def get(host: str, path: str, headers: Mapping[str, str], *, timeout: float = 10) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, timeout=timeout)
    try:
        conn.request("GET", path, headers=dict(headers))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()
