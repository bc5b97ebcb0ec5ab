"""Backups a clinic can restore and prove whole (HIPAA contingency plan; HIP-04, SYS-05).

``backup(path)`` writes one consistent copy of the database, ``path``, and beside it
``path.manifest.json``: when it was taken, the schema revision, the row count of every table, each
location's ledger chain head and its last signed checkpoint, the copy's SHA-256, all signed with the
clinic's Ed25519 key (the one that signs checkpoints).

- SQLite (the embedded default): SQLite's online backup API copies the live database page by page
  inside one read transaction, so writers carry on (WAL) and the copy is one moment of it.
- PostgreSQL: ``pg_dump`` in its custom format. The manifest is read in the very snapshot the dump
  uses (``pg_export_snapshot`` and ``pg_dump --snapshot``), so its counts and heads are the dump's.

``restore(path)`` refuses a copy whose checksum or signature does not hold and a database that is
not empty, loads the copy (``pg_restore --single-transaction``: all or nothing), then reads the same
facts back from the restored database and compares them with the manifest; when the schema is the
code's own it also re-walks every hash chain and checkpoint. What it finds is returned, not hidden:
a restore of a tampered copy completes (the data may be all there is) but reports the damage.

The manifest's facts are read with plain SQL on columns that have existed since the ledger's first
revision, so a backup taken just before an upgrade, by the new code on the old schema, works.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import current_app
from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from clinic.core import signing
from clinic.core.time import utcnow
from clinic.extensions import db

FORMAT = "clinic-backup/1"
MANIFEST_SUFFIX = ".manifest.json"
#: tables whose rows are the database's own bookkeeping, not the clinic's records
_SKIP_TABLES = {"alembic_version"}


class BackupError(RuntimeError):
    """The backup or restore could not be done; the message says why, in words for IT staff."""


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + MANIFEST_SUFFIX)


# --- the facts a manifest holds ------------------------------------------------------------------


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:  # SQLite keeps UTC without an offset (clinic.core.db.UtcDateTime)
        value = value.replace(tzinfo=UTC)
    return str(value.astimezone(UTC).isoformat())


def read_facts(conn: Connection) -> dict[str, Any]:
    """Schema revision, rows per table, and per location the chain head and last checkpoint."""
    names = sorted(t for t in inspect(conn).get_table_names() if t not in _SKIP_TABLES and not t.startswith("sqlite_"))
    quote = conn.dialect.identifier_preparer.quote
    # Table names come from the database's own catalogue, quoted as identifiers.
    tables = {t: int(conn.execute(text(f"SELECT count(*) FROM {quote(t)}")).scalar_one()) for t in names}  # noqa: S608
    revision = None
    if "alembic_version" in inspect(conn).get_table_names():
        revision = ",".join(sorted(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())) or None
    chains: dict[int, dict[str, Any]] = {}
    if "ledger_chains" in tables:
        for location_id, seq, head in conn.execute(
            text("SELECT location_id, head_seq, head_hash FROM ledger_chains ORDER BY location_id")
        ):
            chains[int(location_id)] = {"location_id": int(location_id), "head_seq": int(seq), "head_hash": head}
    if "ledger_checkpoints" in tables:
        rows = conn.execute(
            text(
                "SELECT location_id, seq, head_hash, signed_at, public_key, signature FROM ledger_checkpoints "
                "WHERE id IN (SELECT max(id) FROM ledger_checkpoints GROUP BY location_id) ORDER BY location_id"
            )
        )
        for location_id, seq, head, signed_at, key, signature in rows:
            chain = chains.setdefault(
                int(location_id), {"location_id": int(location_id), "head_seq": None, "head_hash": None}
            )
            chain["last_checkpoint"] = {
                "seq": int(seq),
                "head_hash": head,
                "signed_at": _iso(signed_at),
                "public_key": key,
                "signature": signature,
            }
    for chain in chains.values():
        chain.setdefault("last_checkpoint", None)
    return {"schema_revision": revision, "tables": tables, "ledger": [chains[k] for k in sorted(chains)]}


def compare_facts(expected: dict[str, Any], found: dict[str, Any]) -> list[str]:
    """Every difference between two sets of facts, in words."""
    problems = []
    if expected["schema_revision"] != found["schema_revision"]:
        problems.append(f"schema revision {found['schema_revision']}, the backup says {expected['schema_revision']}")
    for table in sorted(set(expected["tables"]) | set(found["tables"])):
        want, got = expected["tables"].get(table), found["tables"].get(table)
        if want != got:
            problems.append(f"table {table}: {got} rows, the backup says {want}")
    want_chains = {c["location_id"]: c for c in expected["ledger"]}
    got_chains = {c["location_id"]: c for c in found["ledger"]}
    for location_id in sorted(set(want_chains) | set(got_chains)):
        want, got = want_chains.get(location_id), got_chains.get(location_id)
        if want != got:
            problems.append(
                f"location {location_id}: ledger head or checkpoint {_head(got)}, the backup says {_head(want)}"
            )
    return problems


def _head(chain: dict[str, Any] | None) -> str:
    if chain is None:
        return "missing"
    cp = chain.get("last_checkpoint")
    return f"seq {chain['head_seq']} {str(chain['head_hash'])[:16]}, checkpoint {cp['seq'] if cp else None}"


# --- signing the manifest ------------------------------------------------------------------------


def _canonical(manifest: dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _sign(manifest: dict[str, Any]) -> dict[str, Any]:
    manifest["signature"] = {
        "algorithm": "ed25519",
        "public_key": signing.public_key_hex(),
        "value": signing.sign(_canonical(manifest)),
    }
    return manifest


def signature_problem(manifest: dict[str, Any], trusted_key: str | None = None) -> str | None:
    """None when the manifest is signed by ``trusted_key`` (default: this clinic's signing key)."""
    sig = manifest.get("signature") or {}
    key = sig.get("public_key", "")
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(key)).verify(
            bytes.fromhex(sig.get("value", "")), _canonical(manifest)
        )
    except (InvalidSignature, ValueError):
        return "the manifest's signature does not verify: it was altered or not written by clinic backup"
    trusted = trusted_key or signing.public_key_hex()
    if key.lower() != trusted.lower():
        return (
            f"the manifest is signed by key {key}, not by this clinic's key {trusted}; "
            "if you trust that key, pass it with --public-key"
        )
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- backup --------------------------------------------------------------------------------------


def backup(path: Path) -> dict[str, Any]:
    """Write a consistent backup to ``path`` and its signed manifest beside it; return the manifest."""
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    url = db.engine.url
    taken_at = utcnow()
    with _temporary_beside(path) as tmp:
        if url.get_backend_name() == "sqlite":
            facts, tool = _backup_sqlite(_sqlite_file(url), tmp)
        elif url.get_backend_name() == "postgresql":
            facts, tool = _backup_postgresql(url, tmp)
        else:
            raise BackupError(f"no backup method for {url.get_backend_name()}")
        manifest = _sign(
            {
                "format": FORMAT,
                "backend": url.get_backend_name(),
                "tool": tool,
                "created_at": taken_at.isoformat(),
                **facts,
                "file": {"name": path.name, "bytes": tmp.stat().st_size, "sha256": _sha256(tmp)},
            }
        )
        os.replace(tmp, path)
    _write_private(manifest_path(path), json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n")
    return manifest


@contextlib.contextmanager
def _temporary_beside(path: Path) -> Iterator[Path]:
    """A file in the target's folder (so the final rename is atomic), owner-only: backups hold PHI."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _write_private(path: Path, data: bytes) -> None:
    with _temporary_beside(path) as tmp:
        tmp.write_bytes(data)
        os.replace(tmp, path)


def _sqlite_file(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(url.database)


def _backup_sqlite(source: Path, target: Path) -> tuple[dict[str, Any], str]:
    src = sqlite3.connect(source, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)  # the online backup API: one read transaction, writers carry on
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        check = dst.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            raise BackupError(f"the copy fails SQLite's integrity check: {check}")
    finally:
        dst.close()
        src.close()
    return _facts_of_sqlite_file(target), f"sqlite {sqlite3.sqlite_version} online backup"


def _facts_of_sqlite_file(path: Path) -> dict[str, Any]:
    engine = create_engine(f"sqlite:///{path}", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return read_facts(conn)
    finally:
        engine.dispose()


def _backup_postgresql(url: URL, target: Path) -> tuple[dict[str, Any], str]:
    pg_dump = _tool("pg_dump")
    with db.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            conn.execute(text("SET TRANSACTION READ ONLY"))
            snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
            facts = read_facts(conn)  # the dump's own snapshot, so counts and heads are the dump's
            _run(
                [pg_dump, "--format=custom", f"--snapshot={snapshot}", f"--file={target}", "--dbname"],
                url,
            )
    return facts, _version(pg_dump)


# --- restore -------------------------------------------------------------------------------------


@dataclass
class RestoreReport:
    manifest: dict[str, Any]
    #: differences between the restored database and its manifest, and broken chains
    problems: list[str] = field(default_factory=list)
    #: True when the restored schema is the code's own and the chains were re-walked
    verified: bool = False
    chains: list[Any] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def load_manifest(path: Path, *, trusted_key: str | None = None) -> dict[str, Any]:
    """The manifest of the backup at ``path``, once its checksum and signature hold."""
    if not path.is_file():
        raise BackupError(f"{path}: no such backup file")
    mpath = manifest_path(path)
    if not mpath.is_file():
        raise BackupError(f"{mpath}: the backup's manifest is missing")
    try:
        manifest = json.loads(mpath.read_text())
    except ValueError as exc:
        raise BackupError(f"{mpath}: not a manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{mpath}: not a {FORMAT} manifest")
    problem = signature_problem(manifest, trusted_key)
    if problem:
        raise BackupError(problem)
    if _sha256(path) != manifest["file"]["sha256"]:
        raise BackupError(f"{path}: its SHA-256 is not the manifest's: the file was altered or damaged")
    return manifest


def restore(path: Path, *, trusted_key: str | None = None) -> RestoreReport:
    """Load the backup at ``path`` into this app's database, which must be empty; then check it."""
    path = path.resolve()
    manifest = load_manifest(path, trusted_key=trusted_key)
    url = db.engine.url
    if manifest["backend"] != url.get_backend_name():
        raise BackupError(f"this is a {manifest['backend']} backup; DATABASE_URL is {url.get_backend_name()}")
    db.session.remove()
    db.engine.dispose()  # nothing of ours holds the target open while it is written
    what = database_contents(url)
    if what:
        raise BackupError(f"the database is not empty ({what}): restore only into an empty database")
    if url.get_backend_name() == "sqlite":
        _restore_sqlite(path, _sqlite_file(url))
    else:
        pg_restore = _tool("pg_restore")
        _run(
            [pg_restore, "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction", "--dbname"],
            url,
            str(path),
        )
    db.engine.dispose()
    with db.engine.connect() as conn:
        report = RestoreReport(manifest, compare_facts(manifest, read_facts(conn)))
    if manifest["schema_revision"] == code_head():
        from clinic.inventory import integrity

        report.chains = integrity.verify_all()
        report.verified = True
        report.problems += [
            f"location {c.location_id}: ledger BROKEN at seq {c.bad_seq}: {c.problem}"
            for c in report.chains
            if not c.ok
        ]
        db.session.rollback()
    return report


def database_contents(url: URL) -> str | None:
    """What makes the database at ``url`` non-empty, or None when it is empty (or absent, for SQLite)."""
    if url.get_backend_name() == "sqlite":
        file = _sqlite_file(url)
        if not file.exists() or file.stat().st_size == 0:
            # A write-ahead log left behind by a database that is gone would be replayed into the new one.
            for leftover in (file.with_name(file.name + "-wal"), file.with_name(file.name + "-journal")):
                if leftover.exists() and leftover.stat().st_size:
                    return f"{leftover.name} is left over from an earlier database: remove it first"
            return None
        conn = sqlite3.connect(file)
        try:
            n = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        finally:
            conn.close()
        return f"{n} schema objects" if n else None
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as pg:
            relations, functions = pg.execute(
                text(
                    "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND n.nspname NOT IN "
                    "        ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'),"
                    "       (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                    "        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
                    "        AND n.nspname NOT LIKE 'pg\\_%')"
                )
            ).one()
    finally:
        engine.dispose()
    if relations or functions:
        return f"{relations} tables, views or sequences and {functions} functions"
    return None


def _restore_sqlite(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target, timeout=30)
    try:
        src.backup(dst)  # one transaction on the target: all of it or none
        dst.execute("PRAGMA journal_mode=WAL")
        check = dst.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            raise BackupError(f"the restored database fails SQLite's integrity check: {check}")
    finally:
        dst.close()
        src.close()


def code_head() -> str | None:
    """The schema revision this code expects (the migrations' head)."""
    from alembic.script import ScriptDirectory

    from clinic.cli import alembic_config

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    return ",".join(sorted(heads)) or None


# --- PostgreSQL client tools ---------------------------------------------------------------------


def _tool(name: str) -> str:
    folder = current_app.config.get("PG_BIN_DIR")
    found = str(Path(folder) / name) if folder else shutil.which(name)
    if not found or not os.access(found, os.X_OK):
        raise BackupError(
            f"{name} was not found: install PostgreSQL's client tools (the server's major version or newer) "
            "or set CLINIC_PG_BIN_DIR"
        )
    return found


def _version(tool: str) -> str:
    out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30, check=False)  # noqa: S603
    return out.stdout.strip() or Path(tool).name


def _conninfo(url: URL) -> str:
    """A libpq keyword string without the password (that goes in PGPASSWORD, never on a command line)."""
    params: dict[str, Any] = {
        "host": url.host,
        "port": url.port,
        "dbname": url.database,
        "user": url.username,
        **{k: v for k, v in url.query.items() if isinstance(v, str)},
    }

    def quoted(value: Any) -> str:
        return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"

    return " ".join(f"{k}={quoted(v)}" for k, v in params.items() if v is not None)


def _run(argv: list[str], url: URL, *tail: str) -> None:
    """Run a PostgreSQL client tool on ``url`` (``--dbname`` last in ``argv``, then ``tail``)."""
    argv = [argv[0], "--no-password", *argv[1:], _conninfo(url), *tail]
    env = {**os.environ, "PGAPPNAME": "clinic-backup", "PGCONNECT_TIMEOUT": "10"}
    env.pop("PGPASSWORD", None)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)  # noqa: S603 (our own argv)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise BackupError(f"{Path(argv[0]).name} failed: " + " | ".join(detail[-5:]))
