"""users_me: an authenticated GET /api/v1/users/me vs the same request by hand, and vs bare Flask.

Ours is the real thing: gunicorn serving ``clinic.wsgi:app`` on a fresh PostgreSQL database,
the bearer token looked up on every request and an access-log row written for each. Two baselines
run under the same gunicorn settings: ``bench.hand_app``, the same request written by hand (Flask
and a psycopg pool: one token-and-user read, one access-log insert, one commit), the limit for this
shape of request; and ``bench.bare_app``, bare Flask returning the same body (no database at all).
One load generator drives all three, rotating the order per round, and each figure is the median of
the rounds. Afterwards ours and the hand-written app each serve a short counting run through
``bench.wirecount``'s proxy, which counts the SQL round trips they send per request.

Each round is a fixed number of requests (per server, as they differ in speed), cut short by a
time limit if the machine is too slow or too busy. Knobs (environment):
BENCH_USERS_ME_REQUESTS ("ours,hand,bare" per round, default "2500,5000,10000"),
BENCH_USERS_ME_ROUNDS (default 3), BENCH_CONCURRENCY (connections, default 8).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
from pathlib import Path

from bench.harness import (
    BenchmarkError,
    Figure,
    Server,
    gunicorn,
    note,
    postgres_database,
    run_command,
    scalar,
    tool,
)
from bench.loadgen import LoadResult, load_generator
from bench.wirecount import drive, wire_counter

PATH = "/api/v1/users/me"
LABELS = ("ours", "hand", "bare")
_counts = [int(n) for n in os.environ.get("BENCH_USERS_ME_REQUESTS", "2500,5000,10000").split(",") if n.strip()]
REQUESTS = {label: _counts[min(i, len(_counts) - 1)] for i, label in enumerate(LABELS)}
ROUNDS = max(1, int(os.environ.get("BENCH_USERS_ME_ROUNDS", "3")))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
WARMUP_REQUESTS = 500
TIME_LIMIT = 15.0  # seconds per load run, whatever the count
COUNTED_WARMUP = 100  # through the counting proxy: opens every pooled connection, prepares the statements
COUNTED_REQUESTS = 400

EMAIL = {"ours": "bench.nurse@bench.clinic", "hand": "bench.hand@bench.clinic"}
PASSWORD = "throwaway-orchid-lattice"  # throwaway users in a throwaway database
ACTION = "GET auth_api.Me"


def round_trips(label: str, app_spec: str, env: dict[str, str], headers: dict[str, str], log_dir: Path) -> float:
    """SQL round trips per request: ``app_spec`` served through the counting proxy, every answer awaited."""
    with (
        wire_counter(env["DATABASE_URL"]) as wire,
        gunicorn(
            f"{label}-counted", app_spec, env=env | {"DATABASE_URL": wire.url(env["DATABASE_URL"])}, log_dir=log_dir
        ) as server,
    ):
        status, body = server.wait_ready(PATH, headers)
        if status != 200:
            raise BenchmarkError(f"{label} through the counting proxy answered {status}: {body[:300]!r}")
        one = [("GET", PATH, headers, None)]
        drive(server.host, one * COUNTED_WARMUP, concurrency=CONCURRENCY)
        before = wire.snapshot()
        statuses = drive(server.host, one * COUNTED_REQUESTS, concurrency=CONCURRENCY)
        after = wire.snapshot()
    if len(statuses) != COUNTED_REQUESTS or any(s != 200 for s in statuses):
        raise BenchmarkError(f"{label}: the counting run was answered {sorted(set(statuses))}, {len(statuses)} answers")
    trips, statements = after[0] - before[0], after[1] - before[1]
    note(
        f"users_me: {label} sends {trips / COUNTED_REQUESTS:.2f} SQL round trips per request "
        f"({statements / COUNTED_REQUESTS:.2f} statements, BEGIN and COMMIT included; {COUNTED_REQUESTS} requests)"
    )
    return trips / COUNTED_REQUESTS


def main() -> list[Figure]:
    generator = load_generator()
    note(
        f"users_me: load generator {generator.name}, {CONCURRENCY} connections, {ROUNDS} rounds of "
        + " / ".join(f"{REQUESTS[label]} ({label})" for label in LABELS)
        + " requests"
    )
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="clinic-bench-users-me-")))
        url = stack.enter_context(postgres_database("clinic_bench_users_me"))
        env = {k: v for k, v in os.environ.items() if k != "BENCH_BARE_BODY"}
        env |= {"DATABASE_URL": url, "CLINIC_INSTANCE_PATH": str(tmp / "instance")}

        clinic = tool("clinic")
        run_command([clinic, "db", "upgrade"], env=env)
        headers: dict[str, dict[str, str]] = {}
        for label, email in EMAIL.items():  # ours and the hand-written app each have their user
            user = ["--email", email, "--name", f"Bench {label}", "--role", "nurse", "--password-stdin"]
            run_command([clinic, "users", "create", *user], env=env, stdin=PASSWORD + "\n")
            token = run_command([clinic, "users", "token", "--email", email], env=env).strip()
            if not token or any(c.isspace() for c in token):
                raise BenchmarkError(f"clinic users token printed {token!r}, not a single token")
            headers[label] = {"Authorization": f"Bearer {token}"}
        headers["bare"] = headers["ours"]

        ours = stack.enter_context(gunicorn("ours", "clinic.wsgi:app", env=env, log_dir=tmp))
        status, body = ours.wait_ready(PATH, headers["ours"])
        if status != 200:
            raise BenchmarkError(f"ours answered {status} to {PATH}: {body[:500]!r}\n{ours.log_tail()}")
        hand_status, hand_expected = ours.wait_ready(PATH, headers["hand"])  # ours' answer for hand's user

        hand = stack.enter_context(gunicorn("hand", "bench.hand_app:app", env=env, log_dir=tmp))
        bare_env = env | {"BENCH_BARE_BODY": body.decode()}
        bare = stack.enter_context(gunicorn("bare", "bench.bare_app:app", env=bare_env, log_dir=tmp))
        for label, server, expected in (("hand", hand, hand_expected), ("bare", bare, body)):
            got_status, got = server.wait_ready(PATH, headers[label])
            if got_status != 200 or hand_status != 200 or json.loads(got) != json.loads(expected):
                raise BenchmarkError(f"{label} answered {got_status} {got[:500]!r}, not ours' {expected[:500]!r}")
            if got != expected:
                note(f"users_me: {label}'s body equals ours as JSON but not byte for byte")

        servers = {"ours": ours, "hand": hand, "bare": bare}
        sent = {"ours": 2, "hand": 1, "bare": 1}

        def load(label: str, requests: int) -> LoadResult:
            server: Server = servers[label]
            result = generator.run(
                server.host, PATH, headers[label], requests=requests, concurrency=CONCURRENCY, time_limit=TIME_LIMIT
            )
            sent[label] += result.requests
            if not server.alive():
                raise BenchmarkError(f"{label} server died under load:\n{server.log_tail()}")
            result.check(label, requests)
            return result

        for label in LABELS:  # warm up: every worker and thread, the connection pools, the caches
            load(label, WARMUP_REQUESTS)

        results: dict[str, list[LoadResult]] = {label: [] for label in LABELS}
        for round_no in range(ROUNDS):
            shift = round_no % len(LABELS)
            for label in LABELS[shift:] + LABELS[:shift]:
                result = load(label, REQUESTS[label])
                results[label].append(result)
                note(f"users_me round {round_no + 1} {label:<4} {result.summary()}")
        for server in servers.values():
            server.stop()

        per_request = {
            label: round_trips(label, spec, env, headers[label], tmp)
            for label, spec in (("ours", "clinic.wsgi:app"), ("hand", "bench.hand_app:app"))
        }
        for label in EMAIL:
            logged = scalar(
                url,
                "SELECT count(*) FROM access_events a JOIN users u ON u.id = a.user_id"
                f" WHERE a.action = '{ACTION}' AND u.email = '{EMAIL[label]}'",
            )
            if logged < sent[label]:
                raise BenchmarkError(f"{label} answered {sent[label]} requests but wrote {logged} access-log rows")
            note(f"users_me: {logged} access-log rows for {label}'s user, {sent[label]} requests to {label} under load")

    def median(label: str, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in results[label])

    return [
        Figure("users_me.rps_hand", median("ours", "rps"), median("hand", "rps"), decimals=1),
        Figure("users_me.rps", median("ours", "rps"), median("bare", "rps"), decimals=1),
        Figure("users_me.p99_ms_hand", median("ours", "p99_ms"), median("hand", "p99_ms"), decimals=2),
        Figure("users_me.p99_ms", median("ours", "p99_ms"), median("bare", "p99_ms"), decimals=2),
        Figure("users_me.sql_per_request", per_request["ours"], per_request["hand"], decimals=2),
    ]


if __name__ == "__main__":
    for figure in main():
        print(figure.line())
