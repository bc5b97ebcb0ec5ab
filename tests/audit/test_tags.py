"""Audit tags come from one registry (clinic.audit.tags), never from string literals in services."""

from __future__ import annotations

import re
from pathlib import Path

from clinic.audit.tags import Tag, ledger_tag, loss_report_tag
from clinic.inventory.models import EntryKind, LossReportStep

ROOT = Path(__file__).resolve().parents[2] / "clinic"


def test_every_tag_is_domain_subject_action_and_unique():
    assert all(re.fullmatch(r"[a-z]+:[a-z_]+:[a-z_]+", t.value) for t in Tag)
    assert len({t.value for t in Tag}) == len(Tag)


def test_every_ledger_kind_and_loss_step_has_its_tag():
    assert {ledger_tag(k.value) for k in EntryKind} <= set(Tag)
    assert {loss_report_tag(s.value) for s in LossReportStep} <= set(Tag)
    assert loss_report_tag("notice_overdue") in set(Tag)


def test_no_service_spells_a_tag_as_a_string():
    literal = re.compile(r"""tag\s*=\s*f?["']""")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in ROOT.rglob("*.py")
        if path.name != "tags.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert offenders == []
