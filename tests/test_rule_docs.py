"""Every rule ID, test figure and ASVS requirement cited in the repository resolves to a document.

The design notes the IDs come from are not part of the repository, so ``docs/rules/*.md`` (rule
IDs) and ``docs/reliability.md`` (figures F1..F20, ASVS) restate them. This module only reads
files: no app, no database. It checks that

- every citation in the code, tests, bench, migrations, worker, scripts, README.md and docs has a
  heading ``### <ID>``, an em dash and a short title, in the right document, numbered without gaps;
- every section says where the rule comes from, where it is enforced and what proves it;
- every path named on an "Enforced in:", "Related code:" or "Proved by:" line exists, every
  ``path::name`` is defined in that file, and every place given as "Enforced in:" really cites the
  ID, so the documents cannot silently drift from the code;
- an ID cited by the application code names at least one place under "Enforced in:";
- section citations such as ``DOMAIN.md §4`` or ``RELIABILITY.md §1.3`` have a counterpart in docs/.

This module is not scanned itself: it spells out non-citations on purpose.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RULES_DIR = DOCS / "rules"
RELIABILITY = DOCS / "reliability.md"
SCANNED = ("clinic", "tests", "bench", "migrations", "worker", "scripts", "docs", "README.md")
#: where a citation means "the application does this" (so the docs must say where)
APPLICATION = ("clinic", "migrations", "worker")
SKIPPED_DIRS = {"__pycache__", "node_modules", ".venv"}
SELF = Path(__file__).resolve()
EM_DASH = "\u2014"

#: rule family -> the document that holds its headings
FAMILY_FILES = {
    "DEA": "dea.md",
    "SPR": "spravato-rems.md",
    "IVK": "iv-ketamine.md",
    "CI": "screening.md",
    "HIP": "hipaa.md",
    "SYS": "system.md",
    "OUT": "outcomes.md",
}
_FAMILIES = "|".join(FAMILY_FILES)
#: ``DEA-26``, and the shorthands the code uses: ``DEA-23/24``, ``DEA-38..42``, ``CI-01..CI-20``
RULE_RE = re.compile(rf"\b({_FAMILIES})-(\d+)((?:(?:\.\.|/|\u2013)(?:\1-)?\d+)*)\b")
#: ``F17`` and ``F5-F7``; not ``#F00`` (a colour) or ``0xF5``
FIGURE_RE = re.compile(r"(?<![#\w.])F(\d{1,2})((?:[-\u2013]F?\d{1,2})*)\b")
#: ``ASVS V2.3.5``, ``ASVS V16.2.1, V16.3.2``: requirement numbers after "ASVS" on the same line
ASVS_RE = re.compile(r"\bV(\d+(?:\.\d+){1,2})\b")
HEADING_RE = re.compile(
    rf"^(?P<hashes>#{{2,4}}) +(?P<id>(?:{_FAMILIES})-\d+|F\d{{1,2}}|ASVS V\d+(?:\.\d+)+)\b(?P<rest>.*)$"
)
LABEL_RE = re.compile(r"^\*\*(?P<label>Source|Enforced in|Related code|Proved by):\*\*")
REFERENCE_LABELS = ("Enforced in", "Related code", "Proved by")
REQUIRED_LABELS = ("Source", "Enforced in", "Proved by")
SPAN_RE = re.compile(r"`([^`]+)`")
PATH_RE = re.compile(r"^(?P<path>[\w.\-]+(?:/[\w.\-]+)*)(?:::(?P<name>[A-Za-z_][\w.]*))?$")


# --- finding citations -----------------------------------------------------------------------------


def _expand(family: str, first: str, tail: str) -> list[str]:
    """``DEA``, ``38``, ``..42`` -> DEA-38 .. DEA-42; the first number's width is kept as written."""
    width = len(first)
    numbers = [int(first)]
    for sep, number in re.findall(rf"(\.\.|/|\u2013)(?:{family}-)?(\d+)", tail):
        n = int(number)
        if sep == "/":
            numbers.append(n)
        else:
            numbers.extend(range(numbers[-1] + 1, n + 1))
    return [f"{family}-{n:0{width}d}" for n in numbers]


def rule_ids(text: str) -> list[str]:
    return [rid for m in RULE_RE.finditer(text) for rid in _expand(m[1], m[2], m[3])]


def figure_ids(text: str) -> list[str]:
    found = []
    for m in FIGURE_RE.finditer(text):
        numbers = [int(m[1])]
        for number in re.findall(r"\d+", m[2]):
            numbers.extend(range(numbers[-1] + 1, int(number) + 1))
        found.extend(f"F{n}" for n in numbers)
    return found


def asvs_ids(text: str) -> list[str]:
    found = []
    for line in text.splitlines():
        at = line.find("ASVS")
        if at >= 0:
            found.extend(f"ASVS V{m[1]}" for m in ASVS_RE.finditer(line, at))
    return found


def cited_ids(text: str) -> list[str]:
    return rule_ids(text) + figure_ids(text) + asvs_ids(text)


def _files(top: str) -> Iterator[Path]:
    path = ROOT / top
    if path.is_file():
        yield path
        return
    for p in sorted(path.rglob("*")):
        if p.is_file() and p.resolve() != SELF and not SKIPPED_DIRS.intersection(p.relative_to(ROOT).parts):
            yield p


@cache
def _text(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data:
        return None
    return data.decode("utf-8", errors="replace")


@cache
def citations() -> dict[str, set[str]]:
    """ID -> the files (relative paths) that cite it."""
    where: dict[str, set[str]] = defaultdict(set)
    for top in SCANNED:
        for path in _files(top):
            text = _text(path)
            if text is None:
                continue
            rel = path.relative_to(ROOT).as_posix()
            # The documents mention more ASVS requirements than the code cites; only the cited ones need a heading.
            found = rule_ids(text) + figure_ids(text) if top == "docs" else cited_ids(text)
            for cid in found:
                where[cid].add(rel)
    return where


# --- reading the documents -------------------------------------------------------------------------


@dataclass
class Section:
    id: str
    doc: str
    line: int
    title: str
    paragraphs: dict[str, list[str]] = field(default_factory=dict)


def _parse(doc: Path) -> list[Section]:
    sections: list[Section] = []
    current: Section | None = None
    label: str | None = None
    for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        heading = HEADING_RE.match(line)
        if heading:
            current = Section(heading["id"], doc.relative_to(ROOT).as_posix(), n, heading["rest"])
            sections.append(current)
            label = None
            continue
        if line.startswith("#"):
            current, label = None, None
            continue
        if current is None:
            continue
        if not line.strip():
            label = None
            continue
        m = LABEL_RE.match(line)
        if m:
            label = m["label"]
            current.paragraphs.setdefault(label, []).append(line[m.end() :])
        elif label is not None:
            current.paragraphs[label].append(line)
    return sections


@cache
def sections() -> list[Section]:
    docs = [*sorted(RULES_DIR.glob("*.md")), RELIABILITY]
    return [s for doc in docs if doc.exists() for s in _parse(doc)]


@cache
def headings() -> dict[str, list[Section]]:
    found: dict[str, list[Section]] = defaultdict(list)
    for s in sections():
        found[s.id].append(s)
    return found


def _home(cid: str) -> str:
    """The document a heading for this ID belongs in."""
    family = cid.split("-", 1)[0]
    if family in FAMILY_FILES:
        return f"docs/rules/{FAMILY_FILES[family]}"
    return "docs/reliability.md"


def references(section: Section, label: str) -> list[tuple[str, str | None]]:
    """(path, name or None) for every backticked path on one of the section's labelled lines."""
    refs = []
    for span in SPAN_RE.findall(" ".join(section.paragraphs.get(label, []))):
        m = PATH_RE.match(span.strip())
        if m and ("/" in m["path"] or m["name"] or m["path"] == "README.md"):
            refs.append((m["path"], m["name"]))
    return refs


# --- what a Python file defines --------------------------------------------------------------------


@cache
def _tree(rel: str) -> ast.Module:
    return ast.parse((ROOT / rel).read_text(encoding="utf-8"))


def _definitions(rel: str) -> dict[str, list[ast.stmt]]:
    found: dict[str, list[ast.stmt]] = defaultdict(list)
    for node in ast.walk(_tree(rel)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found[node.name].append(node)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id].append(node)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found[node.target.id].append(node)
    return found


def _lookup(rel: str, name: str) -> list[ast.stmt]:
    """The nodes defining ``name`` (``Class.method`` allowed) in the Python file ``rel``."""
    defs = _definitions(rel)
    *outer, last = name.split(".")
    if any(part not in defs for part in outer):
        return []
    return defs.get(last, [])


def _source(rel: str, node: ast.stmt) -> str:
    """A definition's lines, with the comments and decorators right above it."""
    lines = (ROOT / rel).read_text(encoding="utf-8").splitlines()
    start = min([node.lineno - 1, *(d.lineno - 1 for d in getattr(node, "decorator_list", []))])
    while start > 0 and lines[start - 1].lstrip().startswith(("#", "@")):
        start -= 1
    return "\n".join(lines[start : node.end_lineno])


# --- the checks ------------------------------------------------------------------------------------


def test_the_documents_exist_and_the_index_links_every_family():
    index = RULES_DIR / "README.md"
    assert index.is_file() and RELIABILITY.is_file()
    text = index.read_text(encoding="utf-8")
    missing = [name for name in FAMILY_FILES.values() if not (RULES_DIR / name).is_file() or f"({name})" not in text]
    assert not missing, f"docs/rules/README.md must link these existing family documents: {missing}"


def test_the_patterns_match_citations_and_nothing_else():
    assert rule_ids("DEA-26, SPR-10 and CI-03.") == ["DEA-26", "SPR-10", "CI-03"]
    assert rule_ids("DEA-23/24; HIP-01..03; CI-17..CI-20") == [
        "DEA-23",
        "DEA-24",
        "HIP-01",
        "HIP-02",
        "HIP-03",
        "CI-17",
        "CI-18",
        "CI-19",
        "CI-20",
    ]
    assert rule_ids("CI-true, SHA-256, UTF-8, LOT-1, XDEA-01, CI-xx, r'^CI-\\d{2}$'") == []
    assert figure_ids("(F1, F2, F7) and F5-F7") == ["F1", "F2", "F7", "F5", "F6", "F7"]
    assert figure_ids("#F00, 0xF5, PDF5, F5F5, F401") == []
    assert asvs_ids("(HIP-01..03, ASVS V16.2.1, V16.3.2)\nversion V9.9.9") == ["ASVS V16.2.1", "ASVS V16.3.2"]


def test_every_cited_id_has_a_heading():
    missing = {cid: sorted(files) for cid, files in citations().items() if cid not in headings()}
    assert not missing, f"cited but not documented (add a '### <ID> {EM_DASH} <title>' heading): {missing}"


def test_each_id_has_one_heading_in_its_own_document():
    problems = []
    for cid, found in headings().items():
        if len(found) > 1:
            problems.append(f"{cid}: {len(found)} headings ({[f'{s.doc}:{s.line}' for s in found]})")
        for s in found:
            if s.doc != _home(cid):
                problems.append(f"{cid}: belongs in {_home(cid)}, found in {s.doc}:{s.line}")
            if not re.match(r"^ +\u2014 +\S", s.title):
                problems.append(f"{s.doc}:{s.line}: write the heading as '### {cid} {EM_DASH} short title'")
    assert not problems, "\n".join(problems)


def test_each_family_is_numbered_without_gaps():
    numbers: dict[str, list[int]] = defaultdict(list)
    for cid in headings():
        m = re.fullmatch(rf"({_FAMILIES})-(\d+)|(F)(\d+)", cid)
        if m:
            numbers[m[1] or m[3]].append(int(m[2] or m[4]))
    assert set(numbers) == {*FAMILY_FILES, "F"}
    for family, got in numbers.items():
        assert sorted(got) == list(range(1, max(got) + 1)), f"{family}: numbering has gaps: {sorted(got)}"
    assert max(numbers["F"]) == 20


def test_every_section_gives_its_source_enforcement_and_proof():
    problems = [
        f"{s.doc}:{s.line} {s.id}: no **{label}:** paragraph"
        for s in sections()
        for label in REQUIRED_LABELS
        if not " ".join(s.paragraphs.get(label, [])).strip()
    ]
    assert not problems, "\n".join(problems)


def _reference_cases() -> list[tuple[str, str, str, str | None]]:
    return [
        (s.id, label, path, name)
        for s in sections()
        for label in REFERENCE_LABELS
        for path, name in references(s, label)
    ]


@pytest.mark.parametrize(("cid", "label", "path", "name"), _reference_cases())
def test_named_paths_and_definitions_exist(cid, label, path, name):
    target = ROOT / path
    assert target.is_file(), f"{cid} {label}: {path} does not exist"
    if label == "Proved by":
        assert path.startswith("tests/"), f"{cid}: a proof is a test under tests/, not {path}"
    if name is None:
        return
    assert path.endswith(".py"), f"{cid} {label}: {path}::{name} names a definition in a file that is not Python"
    assert _lookup(path, name), f"{cid} {label}: {path} defines no {name}"
    if label == "Proved by":
        assert name.startswith("test_"), f"{cid}: {path}::{name} is not a test function"


@pytest.mark.parametrize(
    ("cid", "path", "name"),
    [(cid, path, name) for cid, label, path, name in _reference_cases() if label == "Enforced in"],
)
def test_enforced_in_points_at_code_that_cites_the_id(cid, path, name):
    target = ROOT / path
    if not target.is_file():
        pytest.fail(f"{cid}: {path} does not exist")
    nodes = _lookup(path, name) if name else []
    text = "\n".join(_source(path, node) for node in nodes) if name else (_text(target) or "")
    assert cid in cited_ids(text), (
        f"{cid}: docs say it is enforced in {path}{'::' + name if name else ''}, which does not cite it; "
        "update the document (or list the place under **Related code:**)"
    )


def test_ids_cited_by_the_application_say_where_they_are_enforced():
    in_app = {
        cid
        for cid, files in citations().items()
        if any(f.split("/", 1)[0] in APPLICATION for f in files) and cid in headings()
    }
    missing = sorted(cid for cid in in_app if not any(references(s, "Enforced in") for s in headings()[cid]))
    assert not missing, f"cited by clinic/, migrations/ or worker/, but 'Enforced in:' names no place: {missing}"


def test_section_citations_of_the_design_notes_resolve():
    """``DOMAIN.md §4`` and ``RELIABILITY.md §1.3`` in the code are mapped in docs/ too."""
    maps = {"DOMAIN.md": RULES_DIR / "README.md", "RELIABILITY.md": RELIABILITY}
    pattern = re.compile(r"\b(DOMAIN\.md|RELIABILITY\.md) (§\d+(?:\.\d+)?(?:, §\d+(?:\.\d+)?)*)")
    missing = set()
    for top in SCANNED:
        if top == "docs":
            continue
        for path in _files(top):
            for m in pattern.finditer(_text(path) or ""):
                for number in re.findall(r"§[\d.]+", m[2]):
                    if f"{m[1]} {number}" not in maps[m[1]].read_text(encoding="utf-8"):
                        missing.add(f"{m[1]} {number} ({path.relative_to(ROOT).as_posix()})")
    assert not missing, f"section citations with no counterpart in docs/: {sorted(missing)}"
