"""reminder_dispatch: 10,000 due reminders delivered to a local SMTP server vs a no-op Celery task.

Both on the same broker (a private redis-server on a free port) with the same worker shape
(``--pool=prefork --concurrency=2``, late acks, prefetch 1), measured in the same run:

- baseline: ``bench.noop`` (bench/noop_tasks.py), a task that only increments a Redis counter;
  N messages published, timed from the first publish until the counter reaches N.
- ours: the real pipeline on PostgreSQL: ``clinic db upgrade`` and ``clinic demo`` in a fresh database,
  then N e-mail reminders (the demo patient's next-day check-in) written as outbox rows, not yet due;
  a real worker and beat (``celery -A worker``, sweeping every second) with e-mail to an aiosmtpd
  server in this process. A warm-up of 20 reminders proves the pipeline runs; then all N are made due
  at once and timed until the SMTP server has accepted N distinct Message-IDs. Any duplicate or a
  reminder left unsent fails the benchmark.

Figure: ``reminder_dispatch.per_s`` ours = reminders delivered per second, baseline = no-op tasks per
second; higher is better, target ratio >= 0.5. Knobs: BENCH_REMINDERS (default 10000),
BENCH_REMINDERS_NOOP (default the same), BENCH_REMINDERS_TASK_BATCH (reminders per task, default 100).
About 1-2 minutes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.harness import (
    BIN,
    REPO,
    BenchmarkError,
    Figure,
    free_port,
    note,
    postgres_database,
    run_command,
    scalar,
    tool,
)

N = int(os.environ.get("BENCH_REMINDERS", "10000"))
N_NOOP = int(os.environ.get("BENCH_REMINDERS_NOOP", str(N)))
TASK_BATCH = int(os.environ.get("BENCH_REMINDERS_TASK_BATCH", "100"))
TIMEOUT = 600.0


@contextlib.contextmanager
def private_redis(tmp: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchmarkError("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(port=port)
        for _ in range(100):
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()


class Inbox:
    def __init__(self) -> None:
        self.ids: Counter[str] = Counter()
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.content.decode(errors="replace") if isinstance(envelope.content, bytes) else envelope.content
        for line in content.splitlines():
            if line.lower().startswith("message-id:"):
                with self.lock:
                    self.ids[line.split(":", 1)[1].strip()] += 1
                break
        return "250 OK"

    def count(self) -> int:
        with self.lock:
            return sum(self.ids.values())


@contextlib.contextmanager
def celery(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [tool("celery"), *args], env=env, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()


WORKER = ["worker", "--pool=prefork", "--concurrency=2", "--loglevel=WARNING", "--without-gossip", "--without-mingle",
          "--without-heartbeat"]  # fmt: skip


def _wait(what: str, done: Any, timeout: float = TIMEOUT) -> float:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise BenchmarkError(f"{what} did not finish within {timeout:.0f} s")
        time.sleep(0.02)
    return time.monotonic()


def noop_rate(env: dict[str, str], tmp: Path) -> float:
    import redis

    counter = redis.Redis.from_url(env["CELERY_BROKER_URL"])
    counter.delete("bench:noop")
    with celery(["-A", "bench.noop_tasks", *WORKER, "-Q", "bench_noop"], env, tmp / "noop-worker.log"):
        os.environ["CELERY_BROKER_URL"] = env["CELERY_BROKER_URL"]
        from bench import noop_tasks

        noop_tasks.noop.delay()  # warm-up: the worker is up and consuming
        _wait("the no-op warm-up", lambda: int(counter.get("bench:noop") or 0) >= 1, 60)
        counter.delete("bench:noop")
        t0 = time.monotonic()
        for _ in range(N_NOOP):
            noop_tasks.noop.delay()
        t1 = _wait("the no-op tasks", lambda: int(counter.get("bench:noop") or 0) >= N_NOOP)
    rate = N_NOOP / (t1 - t0)
    note(f"baseline: {N_NOOP} no-op tasks in {t1 - t0:.1f} s = {rate:.0f}/s")
    return rate


def _seed(url: str) -> list[int]:
    """N outbox rows for the demo's first booked patient, due in a day (made due later)."""
    import psycopg

    with psycopg.connect(url) as conn:
        appt, patient, series, location, starts = conn.execute(
            "SELECT a.id, a.patient_id, a.series_id, a.location_id, a.starts_at FROM appointments a "
            "JOIN patients p ON p.id = a.patient_id WHERE a.status = 'scheduled' AND p.email IS NOT NULL "
            "ORDER BY a.starts_at DESC LIMIT 1"
        ).fetchone()
        # Nothing else may be sent meanwhile: what the demo planned is stood down.
        conn.execute("UPDATE reminders SET status = 'cancelled', cancelled_at = now() WHERE status = 'pending'")
        conn.execute(
            "INSERT INTO reminder_settings (location_id, rules, updated_at) VALUES (%s, %s, now()) "
            "ON CONFLICT (location_id) DO UPDATE SET rules = EXCLUDED.rules",
            (location, '{"quiet_hours": {"start": null, "end": null}}'),
        )
        later = "now() + interval '1 day'"
        params = json.dumps({"starts_at": starts.isoformat()})
        rows = [(f"bench:{uuid.uuid4().hex}", location, patient, appt, series, params) for _ in range(N + 20)]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO reminders (kind, channel, audience, location_id, patient_id, appointment_id, series_id, "
                "dedupe_key, planned_for, due_at, params, status, attempts, next_attempt_at, created_at) VALUES "
                f"('next_day_checkin', 'email', 'patient', %s, %s, %s, %s, %s, {later}, {later}, %s, 'pending', 0, "
                f"{later}, now())",
                [(loc, pat, ap, se, key, params) for key, loc, pat, ap, se, params in rows],
            )
        ids = [r[0] for r in conn.execute("SELECT id FROM reminders WHERE dedupe_key LIKE 'bench:%' ORDER BY id")]
        conn.execute("ANALYZE reminders")
    return ids


def ours_rate(env: dict[str, str], url: str, tmp: Path) -> float:
    from aiosmtpd.controller import Controller

    ids = _seed(url)
    warm, measured = ids[:20], ids[20:]
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    env = {**env, "CLINIC_MAIL_HOST": "127.0.0.1", "CLINIC_MAIL_PORT": str(port),
           "CLINIC_MAIL_MESSAGE_ID_DOMAIN": "bench.test", "CLINIC_REMINDER_SWEEP_SECONDS": "1",
           "CLINIC_REMINDER_TASK_BATCH": str(TASK_BATCH), "CLINIC_REMINDER_CLAIM_BATCH": "2000"}  # fmt: skip

    def due(chosen: list[int]) -> None:
        import psycopg

        with psycopg.connect(url) as conn:
            conn.execute("UPDATE reminders SET due_at = now(), next_attempt_at = now() WHERE id = ANY(%s)", (chosen,))

    try:
        with (
            celery(["-A", "worker", *WORKER], env, tmp / "worker.log"),
            celery(["-A", "worker", "beat", "--loglevel=WARNING", "-s", str(tmp / "beat")], env, tmp / "beat.log"),
        ):
            due(warm)
            _wait("the warm-up reminders", lambda: inbox.count() >= len(warm), 120)
            t0 = time.monotonic()
            due(measured)
            t1 = _wait("the reminders", lambda: inbox.count() >= len(ids))
            time.sleep(3)  # a few more sweeps: nothing may go twice
    finally:
        controller.stop()
    twice = {k: v for k, v in inbox.ids.items() if v > 1}
    if twice or len(inbox.ids) != len(ids):
        raise BenchmarkError(f"{len(twice)} sent twice, {len(ids) - len(inbox.ids)} missing")
    unsent = scalar(url, "SELECT count(*) FROM reminders WHERE dedupe_key LIKE 'bench:%' AND status <> 'sent'")
    if unsent:
        raise BenchmarkError(f"{unsent} reminders not recorded as sent")
    rate = len(measured) / (t1 - t0)
    note(f"ours: {len(measured)} reminders delivered in {t1 - t0:.1f} s = {rate:.0f}/s")
    return rate


def main() -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="bench-reminders-") as tmpdir:
        tmp = Path(tmpdir)
        with postgres_database("clinic_bench_reminders") as url, private_redis(tmp) as broker:
            env = {k: v for k, v in os.environ.items() if not k.startswith("CLINIC_")}
            env.update(
                {
                    "DATABASE_URL": url,
                    "CELERY_BROKER_URL": broker,
                    "CLINIC_INSTANCE_PATH": str(tmp),
                    "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
                    "PYTHONPATH": str(REPO),
                }
            )
            run_command([tool("clinic"), "db", "upgrade"], env=env, timeout=120)
            run_command([tool("clinic"), "demo"], env=env, timeout=300)
            baseline = noop_rate(env, tmp)
            ours = ours_rate(env, url, tmp)
    return [Figure("reminder_dispatch.per_s", ours, baseline)]


if __name__ == "__main__":
    for figure in main():
        print(figure.line())
