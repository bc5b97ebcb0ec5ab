"""Booleans are strict (issue 9): JSON true/false only; ``0``, ``1``, ``"false"`` and ``"yes"`` are a
422 naming the field, and nothing is written. marshmallow's Boolean used to take them all."""

from __future__ import annotations

import pytest

from tests.inventory.conftest import clinic  # noqa: F401 - the fixture
from tests.visits.conftest import ANSWERS


@pytest.mark.parametrize("loose", [0, 1, "false", "true", "yes", "", None])
def test_a_screening_answer_must_be_a_real_boolean(clinic, loose):  # noqa: F811
    path = f"/patients/{clinic.patient_id}/screenings"
    resp = clinic.post(path, {"answers": {**ANSWERS, "pregnant": loose}})
    assert resp.status_code == 422, resp.json
    assert "pregnant" in resp.json["errors"]["answers"], resp.json
    assert clinic.post(path, {"answers": ANSWERS}).status_code == 201


def test_strict_boolean_field():
    import marshmallow as ma

    from clinic.core.fields import StrictBoolean

    field = StrictBoolean()
    assert field.deserialize(True) is True and field.deserialize(False) is False
    for loose in (0, 1, 0.0, "0", "off", "on"):
        with pytest.raises(ma.ValidationError):
            field.deserialize(loose)
