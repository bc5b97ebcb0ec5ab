"""Run the benchmarks: ``python -m bench`` runs them all, ``python -m bench users_me`` a subset.

To add one: write ``bench/NAME.py`` with a ``main() -> list[Figure]`` and add NAME to BENCHMARKS.
Figures go to stdout, one line each; progress and diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from bench.harness import BenchmarkError, Figure, handle_termination, note, warn_if_busy

#: the registry: module names under bench/, run in this order.
BENCHMARKS: list[str] = [
    "users_me",
    "ledger_append",
    "series_booking",
    "observation_board",
    "reminder_dispatch",
    "export",
    "log_seal",
]


def run(name: str) -> list[Figure]:
    module = importlib.import_module(f"bench.{name}")
    return list(module.main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all of {BENCHMARKS})")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    handle_termination()
    warn_if_busy()
    failed: list[str] = []
    for name in args.names or BENCHMARKS:
        try:
            figures = run(name)
        except KeyboardInterrupt:
            note(f"{name}: interrupted")
            return 130
        except BenchmarkError as exc:
            note(f"{name}: FAILED: {exc}")
            failed.append(name)
            continue
        except Exception:
            traceback.print_exc()
            note(f"{name}: FAILED")
            failed.append(name)
            continue
        for figure in figures:
            print(figure.line(), flush=True)
    if failed:
        note(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
