"""log_seal: sealing the access log, and what sealing costs the requests that write it.

- ``log_seal.rows_per_s``: ``clinic.audit.seals.seal_stream`` over N access-log rows on a fresh
  PostgreSQL database (ours: canonical JSON, SHA-256 per row, the Merkle root, an Ed25519 signature
  per 10,000 rows, the seal rows written) vs reading the same rows with psycopg and hashing each
  one's JSON with plain ``hashlib.sha256`` (baseline), in the same run. Higher is better.
- ``log_seal.insert_p50_ms``, ``log_seal.insert_p99_ms``: median and p99 latency of single-row
  access-log inserts (one transaction each, as a request writes its row) from W writer connections
  while a sealer seals in a loop (ours) vs the same writers with no sealer (baseline). Near 1 means
  writers do not wait on the sealer (on a busy 2-core machine the p99 also shows the CPU the
  sealer takes).

Afterwards every seal must verify (``seals.verify_all``) or the benchmark fails.

Knobs (environment): BENCH_LOG_SEAL_ROWS (default 100000), BENCH_LOG_SEAL_INSERTS (inserts per
writer per phase, default 1500), BENCH_CONCURRENCY (writers, default 4).
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import tempfile
import threading
import time
from typing import Any

from bench.harness import BenchmarkError, Figure, note, postgres_database

ROWS = int(os.environ.get("BENCH_LOG_SEAL_ROWS") or 100_000)
INSERTS = int(os.environ.get("BENCH_LOG_SEAL_INSERTS") or 1500)
WRITERS = int(os.environ.get("BENCH_CONCURRENCY") or 4)

_FILL = (
    "INSERT INTO access_events (occurred_at, action, object, outcome, status_code, client_addr, request_id) "
    "SELECT now() - make_interval(secs => g), 'GET auth_api.Me', 'user:' || g, 'allowed', 200, '192.0.2.1', "
    "md5(g::text) FROM generate_series(1, %s) g"
)
_ONE = (
    "INSERT INTO access_events (occurred_at, action, object, outcome, status_code, client_addr, request_id) "
    "VALUES (now(), 'GET auth_api.Me', 'user:1', 'allowed', 200, '192.0.2.1', 'bench')"
)


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _baseline_hash(url: str) -> float:
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(url) as conn, conn.cursor(name="rows") as cur:
        cur.execute(
            "SELECT id, occurred_at, user_id, action, object, outcome, status_code, client_addr, request_id "
            "FROM access_events ORDER BY id"
        )
        names = [d.name for d in cur.description or ()]
        n = 0
        for row in cur:
            body = dict(zip(names, row, strict=True))
            body["occurred_at"] = body["occurred_at"].isoformat()
            hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).digest()
            n += 1
    return n / (time.perf_counter() - started)


def _writers(url: str, stop_sealer: threading.Event | None = None) -> list[float]:
    import psycopg

    latencies: list[float] = []
    lock = threading.Lock()

    def write() -> None:
        mine = []
        with psycopg.connect(url, autocommit=True) as conn:
            for _ in range(INSERTS):
                t = time.perf_counter()
                conn.execute(_ONE)
                mine.append((time.perf_counter() - t) * 1000)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=write) for _ in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if stop_sealer is not None:
        stop_sealer.set()
    return latencies


def main() -> list[Figure]:
    os.environ.setdefault("CLINIC_INSTANCE_PATH", tempfile.mkdtemp(prefix="bench-seal-"))
    from alembic import command

    from clinic import create_app
    from clinic.audit import seals
    from clinic.cli import alembic_config
    from clinic.core.tx import commit
    from clinic.extensions import db

    with postgres_database("bench_log_seal") as url:
        import psycopg

        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SEAL_WAIT_SECONDS": 5})
        with app.app_context():
            command.upgrade(alembic_config(), "head")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(_FILL, (ROWS,))
        note(f"log_seal: {ROWS} rows written")

        baseline_rps = _baseline_hash(url)
        with app.app_context():
            started = time.perf_counter()
            made = seals.seal_stream("access")
            commit()
            ours_rps = ROWS / (time.perf_counter() - started)
        note(f"log_seal: {len(made)} seals over {ROWS} rows")

        alone = _writers(url)
        stop = threading.Event()
        rounds: list[int] = []
        failure: list[BaseException] = []

        def sealer() -> None:
            try:
                with app.app_context():
                    while not stop.is_set():
                        rounds.append(len(seals.seal_stream("access", max_rows=2000)))
                        commit()
            except BaseException as exc:  # reported after the writers finish
                failure.append(exc)

        thread = threading.Thread(target=sealer)
        thread.start()
        together = _writers(url, stop)
        thread.join()
        if failure:
            raise BenchmarkError(f"the sealer failed: {failure[0]!r}")
        with app.app_context():
            seals.seal_stream("access")
            commit()
            reports = seals.verify_all()
            bad = [r.problem for r in reports if not r.ok]
            db.engine.dispose()
        if bad:
            raise BenchmarkError(f"seals do not verify: {bad}")
        note(f"log_seal: {sum(rounds)} seals made in {len(rounds)} rounds while writing")
        figures: list[Any] = [
            Figure("log_seal.rows_per_s", ours_rps, baseline_rps, 0),
            Figure("log_seal.insert_p50_ms", statistics.median(together), statistics.median(alone), 2),
            Figure("log_seal.insert_p99_ms", _p99(together), _p99(alone), 2),
        ]
        return figures
