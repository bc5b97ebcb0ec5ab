"""A ledger export's CSV rows built by PostgreSQL: ``COPY (SELECT ...) TO STDOUT WITH CSV`` (issue 13).

Every cell and the PHI column are computed in SQL from ``ledger_entries``' columns and JSON
details, and the committed record is the one the append kept (``committed_record``, migration
0021), else (an entry written before it) rebuilt in SQL (canonical JSON, salted PHI commitments):
byte for byte what :func:`clinic.exports.writer.csv_line` writes from
:mod:`clinic.exports.verifier`'s renderers:

- canonical JSON: keys in code-point order (``COLLATE "C"`` on UTF-8 is the same order), compact
  separators; a jsonb string's text is escaped exactly as ``json`` escapes with ensure_ascii off
  (``"``, ``\\``, ``\\b \\f \\n \\r \\t``, other controls as ``\\u00xx``);
- times as :func:`~clinic.exports.verifier.format_time` spells them (UTC, microseconds, ``Z``);
- an empty cell is a NULL (COPY quotes an empty string, ``csv.writer`` does not); COPY quotes a
  cell holding a comma, a quote, CR or LF and doubles its quotes, as ``csv_line`` does.

What SQL cannot spell the same way (a details value that is an object, an array or a non-integer
number, a PHI slot without its salt) makes the query fail on that row, through
:data:`FALLBACK`; the writer then rolls back to its savepoint and writes the rows in Python.
tests/exports/test_copy_csv.py compares the two paths' bytes.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from psycopg import sql

from clinic.exports import verifier as proof

#: kinds whose CSV the query can build (loss-log has the Form 106 columns from another table;
#: inventory's lines are arrays of objects, and its filter has special cases)
KINDS = ("dispensing-log", "receiving-log", "waste-log", "disposal-log", "ledger")

#: an expression that fails the query (never folded at plan time: it names the row)
FALLBACK = "(('clinic-export-fallback ' || e.seq)::int)::text"

#: a number whose jsonb text is Python's (an integer; jsonb keeps a decimal's trailing zeros)
_INTEGER = "'^-?[0-9]+$'"

_TIME = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""

_INT_FIELDS = {
    "location_id",
    "seq",
    "container_id",
    "drug_id",
    "delta_ug",
    "balance_after_ug",
    "appointment_id",
    "actor_id",
    "witness_id",
    "second_witness_id",
    "corrects_seq",
}
_TEXT_FIELDS = {"kind", "reason", "prev_hash"}
_TIME_FIELDS = {"occurred_at", "recorded_at"}


def _commit(salt: str, value_json: str) -> str:
    """SHA-256(salt || canonical_json(value)), hex; no salt fails the query (committed() raises)."""
    return (
        f"CASE WHEN {salt} IS NULL THEN {FALLBACK} "
        f"ELSE encode(sha256(decode({salt}, 'hex') || convert_to({value_json}, 'UTF8')), 'hex') END"
    )


def _plain(v: str) -> str:
    """One details value (jsonb ``v``) as canonical JSON; what jsonb cannot spell as Python does
    (an object or array: key order and spacing; a number not a plain integer) fails the query."""
    return (
        f"CASE WHEN jsonb_typeof({v}) IN ('object', 'array') "
        f"OR (jsonb_typeof({v}) = 'number' AND {v}::text !~ '^-?[0-9]+$') "
        f"THEN {FALLBACK} ELSE {v}::text END"
    )


def _key_json(key: str) -> str:
    """A details key as the canonical encoder writes it, quoted as an SQL constant."""
    return literal(json.dumps(key, ensure_ascii=False))


def _detail(v: str, salt: str, patient: str) -> str:
    """A details value in the committed record: a filled PHI slot (``patient`` true) is its commitment."""
    return (
        f"CASE WHEN {patient} AND jsonb_typeof({v}) <> 'null' "
        f"THEN to_json({_commit(salt, _plain(v))})::text ELSE {_plain(v)} END"
    )


def _phi_entry(v: str, salt_json: str, path_json: str) -> str:
    return f"{path_json} || ':{{\"salt\":' || coalesce({salt_json}, {FALLBACK}) || ',\"value\":' || {_plain(v)} || '}}'"


def shape_case(shapes: list[tuple[str, ...]]) -> str:
    """Which of ``shapes`` (1, 2, ...) the row's details have, 0 for none: exactly those keys, and
    every value a string, a boolean or null, whose jsonb text is their canonical JSON (three
    operators in C per row, no per-key walk)."""
    if not shapes:
        return "0"
    arms = []
    for n, shape in enumerate(shapes, start=1):
        keys = _text_array(list(shape))
        arms.append(f"WHEN s.d ?& {keys} AND (s.d - {keys}) = '{{}}'::jsonb THEN {n}")
    simple = """NOT s.d @? '$.* ? (@.type() == "object" || @.type() == "array" || @.type() == "number")'"""
    return f"CASE WHEN jsonb_typeof(s.d) = 'object' AND {simple} THEN CASE {' '.join(arms)} ELSE 0 END ELSE 0 END"


def _details_json(shapes: list[tuple[str, ...]]) -> str:
    """The committed details (PHI slots as commitments), or ``null``. For the details' usual key
    sets (``shapes``, sorted) the object is spelled key by key; any other goes through jsonb_each
    and a per-row sort, several times the work."""
    value = _detail("kv.value", "(s.salts ->> ('details.' || kv.key))", "left(kv.key, 8) = 'patient_'")
    agg = f"string_agg(to_json(kv.key)::text || ':' || {value}, ',' ORDER BY kv.key COLLATE \"C\")"
    generic = f"'{{' || coalesce((SELECT {agg} FROM jsonb_each(s.d) kv), '') || '}}'"
    arms = []
    for n, shape in enumerate(shapes, start=1):
        parts: list[str] = []
        for k in shape:
            v = f"(s.d -> {literal(k)})::text"
            if k.startswith("patient_"):
                digest = _commit(f"(s.salts ->> {literal('details.' + k)})", v)
                v = f"CASE WHEN s.d ->> {literal(k)} IS NULL THEN 'null' ELSE '\"' || {digest} || '\"' END"
            parts += [("'{'" if not parts else "','"), _key_json(k), "':'", v]
        spelled = _concat([*parts, "'}'"]) if parts else "'{}'"
        arms.append(f"WHEN sh.shape = {n} THEN {spelled}")
    return "CASE WHEN s.d IS NULL OR jsonb_typeof(s.d) = 'null' THEN 'null' " + " ".join(arms) + f" ELSE {generic} END"


def _phi_shape(shape: tuple[str, ...]) -> str:
    """Whether the row's details have exactly the keys of ``shape`` and its PHI values are strings,
    booleans or nulls (their jsonb text is then their canonical JSON): all the PHI column needs to
    spell them key by key. Cheaper than :func:`shape_case`, which also walks every other value for
    the committed record, and only the rows whose record is not stored need that."""
    keys = _text_array(list(shape))
    plain = [
        f"coalesce(jsonb_typeof(s.d -> {literal(k)}), 'null') IN ('string', 'boolean', 'null')"
        for k in shape
        if k.startswith("patient_")
    ]
    return " AND ".join(["jsonb_typeof(s.d) = 'object'", f"s.d ?& {keys}", f"(s.d - {keys}) = '{{}}'::jsonb", *plain])


def _phi_json(allowed: tuple[str, ...] | None, shapes: list[tuple[str, ...]]) -> str:
    """The PHI carried: {path: {"salt", "value"}} for the profile's filled slots, keys sorted
    ("details.*" sort before "patient_id")."""

    def carried(key: str) -> bool:
        return key.startswith("patient_") and (allowed is None or "details." + key in allowed)

    entry = _phi_entry("kv.value", "(s.salts -> ('details.' || kv.key))::text", "to_json('details.' || kv.key)::text")
    where = "left(kv.key, 8) = 'patient_' AND jsonb_typeof(kv.value) <> 'null'"
    if allowed is not None:
        paths = [p[8:] for p in allowed if p.startswith("details.")]
        where += " AND kv.key = ANY(" + _text_array(paths) + ")"
    generic = f"(SELECT string_agg({entry}, ',' ORDER BY kv.key COLLATE \"C\") FROM jsonb_each(s.d) kv WHERE {where})"
    arms = []
    for shape in shapes:
        parts = []
        for k in shape:
            if carried(k):
                salt = f"coalesce((s.salts -> {literal('details.' + k)})::text, {FALLBACK})"
                head = literal(json.dumps("details." + k, ensure_ascii=False) + ':{"salt":')
                one = _concat([head, salt, "',\"value\":'", f"(s.d -> {literal(k)})::text", "'}'"])
                parts.append(f"CASE WHEN s.d ->> {literal(k)} IS NULL THEN NULL ELSE {one} END")
        arms.append(f"WHEN {_phi_shape(shape)} THEN " + (f"concat_ws(',', {', '.join(parts)})" if parts else "NULL"))
    details = f"CASE {' '.join(arms)} ELSE {generic} END" if arms else generic
    if allowed is None or "patient_id" in allowed:
        patient = (
            'CASE WHEN e.patient_id IS NULL THEN NULL ELSE \'"patient_id":{"salt":\' || '
            f"coalesce((s.salts -> 'patient_id')::text, {FALLBACK}) || ',\"value\":' || e.patient_id || '}}' END"
        )
    else:
        patient = "NULL"
    return f"concat('{{', concat_ws(',', NULLIF({details}, ''), {patient}), '}}')"


def _text_array(values: list[str]) -> str:
    return (
        "ARRAY[" + ",".join(sql.Literal(v).as_string(None) for v in values) + "]::text[]" if values else "'{}'::text[]"
    )


def _record_value(name: str) -> str:
    if name in _INT_FIELDS:
        return f"coalesce(e.{name}::text, 'null')"
    if name in _TEXT_FIELDS:
        return f"coalesce(to_json(e.{name})::text, 'null')"
    if name in _TIME_FIELDS:
        return f"""coalesce('"' || s.{name} || '"', 'null')"""
    if name == "patient_id":
        digest = _commit("(s.salts ->> 'patient_id')", "e.patient_id::text")
        return f"CASE WHEN e.patient_id IS NULL THEN 'null' ELSE '\"' || {digest} || '\"' END"
    if name == "details":
        return "dj.details"
    if name == "v":
        return "CASE WHEN coalesce(e.phi_salts::jsonb, 'null') = 'null' THEN '1' ELSE '2' END"
    raise ValueError(name)


def _record_json() -> str:
    names = sorted((*proof.HASHED_FIELDS, "v"))
    parts = []
    for i, n in enumerate(names):
        parts += [f"'{'{' if i == 0 else ','}\"{n}\":'", _record_value(n)]
    return _concat([*parts, "'}'"])


def _concat(parts: list[str]) -> str:
    """One concat() call: a chain of ``||`` copies the growing text once per piece."""
    return "concat(" + ", ".join(parts) + ")"


def _mg(expr: str) -> str:
    """format_mg: sign, whole milligrams, then the thousandths without trailing zeros."""
    return (
        f"CASE WHEN {expr} IS NULL THEN NULL ELSE "
        f"CASE WHEN {expr} < 0 THEN '-' ELSE '' END || (abs({expr}) / 1000)::text || "
        f"CASE WHEN abs({expr}) % 1000 = 0 THEN '' "
        f"ELSE '.' || rtrim(lpad((abs({expr}) % 1000)::text, 3, '0'), '0') END END"
    )


def _cell(spec: str, allowed: tuple[str, ...] | None, params: dict[str, Any]) -> str:
    how, _, what = spec.rpartition(":")
    if how == "":
        if what in _INT_FIELDS:
            return f"e.{what}::text"
        if what in _TEXT_FIELDS:
            return f"nullif(e.{what}, '')"
        if what in _TIME_FIELDS:
            return f"s.{what}"
        raise ValueError(spec)
    if how in ("mg", "-mg"):
        return _mg(f"(-e.{what})" if how == "-mg" else f"e.{what}")
    if how == "d":
        if what == "*":
            return "coalesce(nullif(dj.details, 'null'), '{}')"
        if what.startswith("patient_"):  # the record holds its commitment
            key = sql.Literal(what).as_string(None)
            salt = "(s.salts ->> " + sql.Literal("details." + what).as_string(None) + ")"
            return (
                f"CASE WHEN coalesce(jsonb_typeof(s.d -> {key}), 'null') = 'null' THEN NULL "
                f"ELSE {_commit(salt, f'(s.d -> {key})::text')} END"
            )
        # a value whose jsonb text is not the canonical JSON the cell holds fails the query (the
        # stored record no longer makes the row go through _plain's checks)
        v = f"(s.d -> {literal(what)})"
        odd = f"jsonb_typeof({v}) IN ('object', 'array') OR (jsonb_typeof({v}) = 'number' AND {v}::text !~ {_INTEGER})"
        return f"CASE WHEN {odd} THEN {FALLBACK} ELSE nullif(s.d ->> {literal(what)}, '') END"
    if how == "user":
        return f"nullif({params['users']} ->> e.{what}::text, '')"
    if how == "drug":  # a CASE on the drug id: constants, no lookup per row
        arms = [f"WHEN {int(did)} THEN {literal(cells[what])}" for did, cells in params["drugs"].items() if cells[what]]
        return f"CASE e.drug_id {' '.join(arms)} END" if arms else "NULL"
    if how == "phi":
        if allowed is not None and what not in allowed:
            return "NULL"
        if what == "patient_id":
            return "e.patient_id::text"
        return f"nullif(s.d ->> {sql.Literal(what[8:]).as_string(None)}, '')"
    raise ValueError(spec)


def literal(value: Any) -> str:
    """A constant, quoted as SQL (the COPY takes no parameters)."""
    return sql.Literal(value).as_string(None)


def included(kind: str, filters: dict[str, Any], names: dict[str, Any], e: str = "e") -> str | None:
    """:func:`clinic.exports.verifier.included` as a condition on ``ledger_entries`` (named ``e``)
    that is never NULL; None when the kind's rule has no SQL form here."""
    if kind not in KINDS:
        return None
    takes = proof.KINDS[kind][0] or ()
    terms = []
    if takes:
        terms.append(f"{e}.kind IN (" + ",".join(sql.Literal(t).as_string(None) for t in takes) + ")")
    # the filters' bounds are format_time text, as the records': comparing the times is comparing them
    for bound, op in (("since", ">="), ("until", "<")):
        if filters.get(bound):
            at = datetime.fromisoformat(filters[bound].replace("Z", "+00:00"))
            terms.append(f"{e}.occurred_at {op} {sql.Literal(at).as_string(None)}::timestamptz")
    if filters.get("drug_id") is not None:
        terms.append(f"{e}.drug_id = {int(filters['drug_id'])}")
    if filters.get("schedule"):
        ids = [int(k) for k, d in names.get("drugs", {}).items() if d.get("schedule") == filters["schedule"]]
        terms.append(f"{e}.drug_id = ANY(ARRAY[" + ",".join(map(str, ids)) + "]::int[])" if ids else "false")
    return "coalesce(" + (" AND ".join(terms) or "true") + ", false)"


def jsonb(value: Any) -> str:
    """A constant jsonb literal."""
    return sql.Literal(json.dumps(value, ensure_ascii=False)).as_string(None) + "::jsonb"


def shapes_query(where: str, segment: tuple[int, int, int]) -> str:
    """The details' key sets (sorted as the canonical encoder sorts them) among the first and the
    last thousand rows the export takes: the shapes :func:`select_rows` spells key by key."""
    rows = (
        f"SELECT e.details FROM ledger_entries e WHERE e.location_id = {int(segment[0])} "
        f"AND e.seq BETWEEN {int(segment[1])} AND {int(segment[2])} AND {where} ORDER BY e.seq {{}} LIMIT 1000"
    )
    keys = '(SELECT array_agg(k ORDER BY k COLLATE "C") FROM jsonb_object_keys(x.details::jsonb) k)'
    return (
        f"SELECT DISTINCT {keys} FROM (({rows.format('ASC')}) UNION ALL ({rows.format('DESC')})) x "
        "WHERE jsonb_typeof(x.details::jsonb) = 'object' LIMIT 8"
    )


def summary_query(where: str, allowed: tuple[str, ...] | None, segment: tuple[int, int, int]) -> str:
    """What the Python loop gathers row by row (the rows taken, the patients whose PHI they carry,
    the users and drugs they name), in one pass grouped to a handful of rows."""
    if allowed is None or "patient_id" in allowed:
        has_phi = "e.patient_id IS NOT NULL"
    else:
        keys = [p[8:] for p in allowed if p.startswith("details.")]
        has_phi = " OR ".join(
            f"coalesce(jsonb_typeof(e.details::jsonb -> {literal(k)}), 'null') <> 'null'" for k in keys
        )
    return (
        f"SELECT {where}, CASE WHEN {where} AND ({has_phi or 'false'}) THEN e.patient_id END, e.actor_id, "
        f"e.witness_id, e.second_witness_id, e.drug_id, count(*) FROM ledger_entries e "
        f"WHERE e.location_id = {int(segment[0])} AND e.seq BETWEEN {int(segment[1])} AND {int(segment[2])} "
        "GROUP BY 1, 2, 3, 4, 5, 6"
    )


def select_rows(
    kind: str,
    allowed: tuple[str, ...] | None,
    where: str,
    segment: tuple[int, int, int],
    names: dict[str, Any],
    shapes: list[tuple[str, ...]] | None = None,
    *,
    stored: bool = False,
) -> str:
    """The SELECT whose CSV is the export's rows (header excluded), in seq order: the entries of
    ``segment`` (location, first seq, last seq) that ``where`` takes. ``names`` are the manifest's
    user names and drug records; each drug's cells are rendered here once, as the renderers do.

    ``stored``: every entry of the segment keeps its committed record (migration 0021; see
    :func:`last_without_record`), which is sent as it is; else a row without one has it rebuilt."""
    drug_cells = [
        (h, render) for h, render in proof.renderers(kind) if dict(proof.KINDS[kind][1])[h].startswith("drug:")
    ]
    drugs = {
        did: {dict(proof.KINDS[kind][1])[h][5:]: render({"drug_id": int(did)}, {}, names) for h, render in drug_cells}
        for did in names.get("drugs", {})
    }
    users = {uid: proof.text(name) for uid, name in names.get("users", {}).items()}
    params = {"users": jsonb(users), "drugs": drugs}
    cells = [_cell(spec, allowed, params) for _, spec in proof.KINDS[kind][1]]
    shapes = [tuple(shape) for shape in shapes or []]
    if stored:
        # a stored record is form 2's: an entry without salts (form 1) or without a record makes
        # the query fail and the Python writer take the rows, as for any row SQL cannot spell
        form1 = "e.phi_salts IS NULL OR e.phi_salts::text = 'null'"
        record = f"CASE WHEN {form1} THEN {FALLBACK} ELSE coalesce(e.committed_record, {FALLBACK}) END"
        salts = "e.phi_salts::jsonb"
    else:
        # the record kept, else rebuilt from the columns in a subquery run for that row alone
        # (COALESCE stops at the stored text): the details' shape, the canonical JSON and the
        # commitments cost only the entries written before 0021
        record = f"coalesce(e.committed_record, (SELECT {_record_json()} FROM {_details_laterals(shapes)}))"
        # a form-1 entry's salts are in ledger_form1_salts: looked up for those rows only
        form1_salts = (
            "(SELECT nullif(f.salts::jsonb, 'null') FROM ledger_form1_salts f "
            "WHERE f.location_id = e.location_id AND f.seq = e.seq)"
        )
        salts = f"coalesce(nullif(e.phi_salts::jsonb, 'null'), {form1_salts}, '{{}}')"
    cells += ["e.hash", record, _phi_json(allowed, shapes)]
    # the whole committed details as a cell (the ledger kind's) is rebuilt for every row
    laterals = f"CROSS JOIN {_details_laterals(shapes)}\n" if any("dj." in c for c in cells[:-3]) else ""
    return (
        "SELECT " + ",\n  ".join(cells) + "\nFROM ledger_entries e\n"
        f"CROSS JOIN LATERAL (SELECT e.details::jsonb AS d, {salts} AS salts, "
        f"{_TIME.format('e.occurred_at')} AS occurred_at, {_TIME.format('e.recorded_at')} AS recorded_at "
        "OFFSET 0) s\n"  # OFFSET 0: computed once per row, not inlined at every use
        f"{laterals}"
        f"WHERE e.location_id = {int(segment[0])} AND e.seq BETWEEN {int(segment[1])} AND {int(segment[2])}\n"
        f"AND {where}\nORDER BY e.seq"
    )


def last_without_record(segment: tuple[int, int, int]) -> str:
    """The last seq of ``segment`` whose entry keeps no committed record (written before migration
    0021), or NULL: from the partial index of those entries, whatever the segment's length."""
    return (
        f"SELECT max(e.seq) FROM ledger_entries e WHERE e.location_id = {int(segment[0])} "
        f"AND e.seq BETWEEN {int(segment[1])} AND {int(segment[2])} AND e.committed_record IS NULL"
    )


def _details_laterals(shapes: list[tuple[str, ...]]) -> str:
    """The details' shape (computed once) and their committed text, ``dj.details``."""
    return (
        f"LATERAL (SELECT {shape_case(shapes)} AS shape OFFSET 0) sh "
        f"CROSS JOIN LATERAL (SELECT {_details_json(shapes)} AS details) dj"
    )
