"""The flag rules on their own (clinic/patients/screening.py): no database, no app."""

from __future__ import annotations

from datetime import date

import pytest

from clinic.patients import screening
from clinic.patients.schemas import ScreeningAnswersSchema
from clinic.patients.screening import Level, age_on, classify_medications, evaluate

ADULT = date(1980, 2, 3)
TODAY = date(2026, 11, 23)  # a fixed day on purpose: evaluate() is given its date and reads no clock
NO = dict.fromkeys(screening.REQUIRED_ANSWERS, False)


def run(levels=None, born=ADULT, **answers):
    return evaluate(answers={**NO, "medications": [], **answers}, date_of_birth=born, on=TODAY, levels=levels)


def codes(flags):
    return [(f["code"], f["level"]) for f in flags]


def test_no_flags_is_eligible():
    assert run() == ("eligible", [])


def test_default_levels_follow_domain_section_4():
    expected = {
        "CI-01": "HARD",
        "CI-02": "HARD",
        "CI-03": "HARD",
        "CI-04": "OVERRIDE",
        "CI-05": "OVERRIDE",
        "CI-06": "OVERRIDE",
        "CI-07": "HARD",
        "CI-08": "OVERRIDE",
        "CI-09": "OVERRIDE",
        **{f"CI-{n}": "WARN" for n in range(10, 17)},
        "CI-17": "OVERRIDE",
        "CI-18": "OVERRIDE",
        "CI-19": "WARN",
        "CI-20": "WARN",
    }
    assert {code: rule.level.value for code, rule in screening.ALL_RULES.items()} == expected


def test_every_answer_the_schema_takes_has_a_rule():
    fields = set(ScreeningAnswersSchema().fields) - {"medications"}
    assert fields == set(screening.ANSWER_RULES) == {*screening.REQUIRED_ANSWERS, *screening.OPTIONAL_ANSWERS}
    required = {name for name, field in ScreeningAnswersSchema().fields.items() if field.required}
    assert required == {*screening.REQUIRED_ANSWERS, "medications"}


@pytest.mark.parametrize(
    ("answer", "code", "eligibility"),
    [
        ("prior_ketamine_reaction", "CI-02", "ineligible"),
        ("aneurysm_avm_or_ich", "CI-03", "ineligible"),
        ("uncontrolled_hypertension", "CI-04", "review"),
        ("cardiovascular_disease", "CI-05", "review"),
        ("psychosis_or_mania", "CI-06", "review"),
        ("pregnant", "CI-07", "ineligible"),
        ("breastfeeding", "CI-08", "review"),
        ("substance_use_disorder", "CI-09", "review"),
        ("raised_intracranial_or_intraocular_pressure", "CI-17", "review"),
        ("untreated_hyperthyroidism", "CI-18", "review"),
        ("liver_or_bladder_disease", "CI-19", "eligible"),
        ("suicidality", "CI-20", "eligible"),
    ],
)
def test_each_answer_raises_its_flag(answer, code, eligibility):
    result, flags = run(**{answer: True})
    assert result == eligibility
    assert [f["code"] for f in flags] == [code]
    assert len(flags[0]["text"]) > 40  # a reason, not a label


def test_unanswered_optional_questions_raise_nothing():
    assert run(suicidality=None, liver_or_bladder_disease=False) == ("eligible", [])


@pytest.mark.parametrize(
    ("born", "age", "flagged"),
    [
        (date(2008, 11, 24), 17, True),  # eighteenth birthday tomorrow
        (date(2008, 11, 23), 18, False),  # eighteenth birthday today
        (date(2010, 1, 1), 16, True),
    ],
)
def test_age_from_date_of_birth(born, age, flagged):
    assert age_on(born, TODAY) == age
    result, flags = run(born=born)
    assert (result, codes(flags)) == (("ineligible", [("CI-01", "HARD")]) if flagged else ("eligible", []))
    if flagged:
        assert f"age {age}" in flags[0]["text"]


def test_leap_day_birthday_counts_from_first_of_march():
    assert age_on(date(2008, 2, 29), date(2026, 2, 28)) == 17
    assert age_on(date(2008, 2, 29), date(2026, 3, 1)) == 18


def test_medicines_match_generic_and_brand_names_ignoring_case_and_strength():
    found = classify_medications(
        ["XANAX 0.5 mg", "Lamictal XR", "dextroamphetamine-amphetamine", "St. John's Wort", "vitamin D", "Theo-24"]
    )
    assert found == {
        "CI-10": ["XANAX 0.5 mg"],
        "CI-13": ["Lamictal XR"],
        "CI-12": ["dextroamphetamine-amphetamine"],
        "CI-16": ["St. John's Wort"],
        "CI-15": ["Theo-24"],
    }


def test_medicines_match_whole_words_only():
    # "amphetamine" is not a word of "lisdexamfetamine"; "soma" is not a word of "somatropin".
    assert classify_medications(["lisdexamfetamine"]) == {"CI-12": ["lisdexamfetamine"]}
    assert classify_medications(["somatropin", "oxazepamine"]) == {}


@pytest.mark.parametrize(
    ("medicine", "code"),
    [
        ("alprazolam", "CI-10"),
        ("lorazepam", "CI-10"),
        ("clonazepam", "CI-10"),
        ("diazepam", "CI-10"),
        ("temazepam", "CI-10"),
        ("chlordiazepoxide", "CI-10"),
        ("midazolam", "CI-10"),
        ("oxycodone", "CI-11"),
        ("buprenorphine", "CI-11"),
        ("zolpidem", "CI-11"),
        ("gabapentin", "CI-11"),
        ("amphetamine", "CI-12"),
        ("lisdexamfetamine", "CI-12"),
        ("methylphenidate", "CI-12"),
        ("modafinil", "CI-12"),
        ("armodafinil", "CI-12"),
        ("phenelzine", "CI-12"),
        ("tranylcypromine", "CI-12"),
        ("isocarboxazid", "CI-12"),
        ("selegiline", "CI-12"),
        ("lamotrigine", "CI-13"),
        ("memantine", "CI-14"),
        ("dextromethorphan", "CI-14"),
        ("amantadine", "CI-14"),
        ("theophylline", "CI-15"),
        ("aminophylline", "CI-15"),
        ("rifampin", "CI-16"),
        ("clarithromycin", "CI-16"),
        ("ketoconazole", "CI-16"),
    ],
)
def test_medicine_classes(medicine, code):
    assert list(classify_medications([medicine.capitalize()])) == [code]


def test_one_medicine_can_belong_to_two_classes():
    assert classify_medications(["phenobarbital"]) == {"CI-11": ["phenobarbital"], "CI-16": ["phenobarbital"]}


def test_benzodiazepine_and_lamotrigine_warn_with_reasons():
    result, flags = run(medications=["alprazolam", "lamotrigine"])
    assert result == "eligible"
    assert codes(flags) == [("CI-10", "WARN"), ("CI-13", "WARN")]
    assert "alprazolam" in flags[0]["text"] and "sedation" in flags[0]["text"]
    assert "lamotrigine" in flags[1]["text"] and "antidepressant" in flags[1]["text"]


def test_location_levels_raise_or_lower_a_flag():
    assert run(levels={"CI-06": "HARD"}, psychosis_or_mania=True)[0] == "ineligible"
    assert run(levels={"CI-10": "OVERRIDE"}, medications=["diazepam"])[0] == "review"
    assert run(levels={"CI-07": "OVERRIDE"}, pregnant=True)[0] == "review"
    assert run(levels={"CI-04": "WARN"}, uncontrolled_hypertension=True)[0] == "eligible"


def test_age_cannot_be_lowered_below_hard_and_bad_levels_are_ignored():
    result, flags = run(levels={"CI-01": "WARN", "CI-06": "SOMETIMES"}, born=date(2010, 1, 1), psychosis_or_mania=True)
    assert codes(flags) == [("CI-01", "HARD"), ("CI-06", "OVERRIDE")]
    assert result == "ineligible"


def test_hard_beats_override_beats_warn():
    assert run(psychosis_or_mania=True, pregnant=True, medications=["lorazepam"])[0] == "ineligible"
    assert run(psychosis_or_mania=True, medications=["lorazepam"])[0] == "review"
    assert screening.eligibility_of([{"level": Level.WARN}]) == "eligible"
