"""users_me: an authenticated GET /api/v1/users/me vs a bare Flask app returning the same body.

Ours is the real thing: gunicorn serving ``clinic.wsgi:app`` on a fresh PostgreSQL database,
the bearer token looked up on every request and an access-log row written for each. The
baseline is ``bench.bare_app`` under the same gunicorn settings. One load generator drives
both, alternating rounds, and each figure is the median of the rounds.

Each round is a fixed number of requests (ours is ~15x slower, so it gets fewer), cut short by a
time limit if the machine is too slow or too busy. Knobs (environment):
BENCH_USERS_ME_REQUESTS ("ours,baseline" per round, default "2500,10000"),
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

PATH = "/api/v1/users/me"
_ours_n, _, _base_n = os.environ.get("BENCH_USERS_ME_REQUESTS", "2500,10000").partition(",")
REQUESTS = {"ours": int(_ours_n), "baseline": int(_base_n or _ours_n)}
ROUNDS = max(1, int(os.environ.get("BENCH_USERS_ME_ROUNDS", "3")))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
WARMUP_REQUESTS = 500
TIME_LIMIT = 15.0  # seconds per load run, whatever the count

EMAIL = "bench.nurse@bench.clinic"
PASSWORD = "bench-password-not-secret"  # a throwaway user in a throwaway database


def main() -> list[Figure]:
    generator = load_generator()
    note(
        f"users_me: load generator {generator.name}, {CONCURRENCY} connections, {ROUNDS} rounds of "
        f"{REQUESTS['ours']} (ours) / {REQUESTS['baseline']} (baseline) requests"
    )
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="clinic-bench-users-me-")))
        url = stack.enter_context(postgres_database("clinic_bench_users_me"))
        env = {k: v for k, v in os.environ.items() if k != "BENCH_BARE_BODY"}
        env |= {"DATABASE_URL": url, "CLINIC_INSTANCE_PATH": str(tmp / "instance")}

        clinic = tool("clinic")
        run_command([clinic, "db", "upgrade"], env=env)
        user = ["--email", EMAIL, "--name", "Bench Nurse", "--role", "nurse", "--password-stdin"]
        run_command([clinic, "users", "create", *user], env=env, stdin=PASSWORD + "\n")
        token = run_command([clinic, "users", "token", "--email", EMAIL], env=env).strip()
        if not token or any(c.isspace() for c in token):
            raise BenchmarkError(f"clinic users token printed {token!r}, not a single token")
        headers = {"Authorization": f"Bearer {token}"}

        ours = stack.enter_context(gunicorn("ours", "clinic.wsgi:app", env=env, log_dir=tmp))
        status, body = ours.wait_ready(PATH, headers)
        if status != 200:
            raise BenchmarkError(f"ours answered {status} to {PATH}: {body[:500]!r}\n{ours.log_tail()}")

        bare_env = env | {"BENCH_BARE_BODY": body.decode()}
        baseline = stack.enter_context(gunicorn("baseline", "bench.bare_app:app", env=bare_env, log_dir=tmp))
        bare_status, bare_body = baseline.wait_ready(PATH, headers)
        if bare_status != 200 or json.loads(bare_body) != json.loads(body):
            raise BenchmarkError(f"baseline answered {bare_status} {bare_body[:500]!r}, not ours' {body[:500]!r}")
        if bare_body != body:
            note("users_me: baseline body equals ours as JSON but not byte for byte")

        servers = {"ours": ours, "baseline": baseline}
        sent = {"ours": 1, "baseline": 1}

        def load(label: str, requests: int) -> LoadResult:
            server: Server = servers[label]
            result = generator.run(
                server.host, PATH, headers, requests=requests, concurrency=CONCURRENCY, time_limit=TIME_LIMIT
            )
            sent[label] += result.requests
            if not server.alive():
                raise BenchmarkError(f"{label} server died under load:\n{server.log_tail()}")
            result.check(label, requests)
            return result

        for label in servers:  # warm up: every worker and thread, the connection pools, the caches
            load(label, WARMUP_REQUESTS)

        results: dict[str, list[LoadResult]] = {"ours": [], "baseline": []}
        for round_no in range(ROUNDS):
            order = ["ours", "baseline"] if round_no % 2 == 0 else ["baseline", "ours"]
            for label in order:
                result = load(label, REQUESTS[label])
                results[label].append(result)
                note(f"users_me round {round_no + 1} {label:<8} {result.summary()}")

        logged = scalar(url, "SELECT count(*) FROM access_events WHERE action = 'GET auth_api.Me'")
        if logged < sent["ours"]:
            raise BenchmarkError(f"ours answered {sent['ours']} requests but wrote {logged} access-log rows")
        note(f"users_me: {logged} access-log rows for {sent['ours']} requests to ours")

    def median(label: str, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in results[label])

    return [
        Figure("users_me.rps", median("ours", "rps"), median("baseline", "rps"), decimals=1),
        Figure("users_me.p99_ms", median("ours", "p99_ms"), median("baseline", "p99_ms"), decimals=2),
    ]


if __name__ == "__main__":
    for figure in main():
        print(figure.line())
