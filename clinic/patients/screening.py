"""Screening rules (DOMAIN.md §4): answers and medicines in, flags and an eligibility out.

Pure functions, no database: the service loads the patient and the location's level map and
stores what :func:`evaluate` returns. Every flag has a stable code (CI-xx), a level and a text in
plain language that says why it matters, so staff can act on it without looking anything up.

Levels (configurable per location through ``jurisdiction["screening_levels"]``):

- HARD: blocks booking and dosing; nobody can override it.
- OVERRIDE: a prescriber must record a risk/benefit reason before the patient can be booked.
- WARN: shown to staff; it does not block.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

logger = logging.getLogger(__name__)

ADULT_AGE = 18


class Level(StrEnum):
    HARD = "HARD"
    OVERRIDE = "OVERRIDE"
    WARN = "WARN"


class Eligibility(StrEnum):
    eligible = "eligible"
    review = "review"
    ineligible = "ineligible"


_RANK = {Level.WARN: 0, Level.OVERRIDE: 1, Level.HARD: 2}


@dataclass(frozen=True)
class Rule:
    code: str
    level: Level  # the default (DOMAIN.md §4 suggested level)
    text: str
    #: a location may not set the level below this (CI-01: the booking check enforces it anyway).
    floor: Level | None = None


@dataclass(frozen=True)
class MedicationClass:
    code: str
    label: str
    names: tuple[str, ...]


# --- the rules -----------------------------------------------------------------------------------

#: Yes/no answers and the rule each one raises when answered "yes". The first eight are the
#: CONTRACT's required answers; the last four (CI-17..CI-20) are optional questions.
ANSWER_RULES: dict[str, Rule] = {
    "prior_ketamine_reaction": Rule(
        "CI-02",
        Level.HARD,
        "Prior hypersensitivity or serious reaction to ketamine or esketamine: both labels list this "
        "as a contraindication.",
    ),
    "aneurysm_avm_or_ich": Rule(
        "CI-03",
        Level.HARD,
        "Aneurysmal vascular disease, arteriovenous malformation or a past intracerebral bleed: the "
        "blood-pressure rise after a dose could rupture a vessel (an esketamine contraindication; "
        "ketamine raises blood pressure the same way).",
    ),
    "uncontrolled_hypertension": Rule(
        "CI-04",
        Level.OVERRIDE,
        "Uncontrolled high blood pressure: both drugs raise blood pressure for hours after a dose, "
        "so a prescriber must weigh the risk against the benefit first.",
    ),
    "cardiovascular_disease": Rule(
        "CI-05",
        Level.OVERRIDE,
        "Heart or cerebrovascular disease (e.g. coronary disease, prior stroke, brain injury, "
        "pre-eclampsia): a rise in blood pressure or heart rate is riskier, so a prescriber must "
        "weigh the risk against the benefit.",
    ),
    "psychosis_or_mania": Rule(
        "CI-06",
        Level.OVERRIDE,
        "Psychosis, schizophrenia or mania: ketamine can worsen these symptoms; start only if a "
        "prescriber judges the benefit to outweigh the risk.",
    ),
    "pregnant": Rule(
        "CI-07",
        Level.HARD,
        "Pregnant: esketamine may harm the unborn baby and is not to be used in pregnancy; clinic "
        "policy applies the same to ketamine.",
    ),
    "breastfeeding": Rule(
        "CI-08",
        Level.OVERRIDE,
        "Breastfeeding: not recommended during esketamine treatment; a prescriber must weigh the "
        "risk against the benefit.",
    ),
    "substance_use_disorder": Rule(
        "CI-09",
        Level.OVERRIDE,
        "Substance use disorder (including alcohol) or a history of misuse: ketamine can be misused, "
        "so a prescriber must assess and document the risk before treatment.",
    ),
    "raised_intracranial_or_intraocular_pressure": Rule(
        "CI-17",
        Level.OVERRIDE,
        "Raised pressure in the skull or eye, a brain mass or an open eye injury: ketamine can raise "
        "these pressures further; a prescriber must weigh the risk.",
    ),
    "untreated_hyperthyroidism": Rule(
        "CI-18",
        Level.OVERRIDE,
        "Untreated overactive thyroid: ketamine's stimulant effect on heart rate and blood pressure "
        "adds to it (a contraindication in some ketamine labels).",
    ),
    "liver_or_bladder_disease": Rule(
        "CI-19",
        Level.WARN,
        "Liver disease or bladder/urinary symptoms: repeated ketamine can injure the liver and cause "
        "cystitis; monitor and ask about symptoms.",
    ),
    "suicidality": Rule(
        "CI-20",
        Level.WARN,
        "Suicidal thoughts or behaviour: track at every visit; esketamine has not been shown to "
        "prevent suicide, so consider whether a higher level of care is needed.",
    ),
}

REQUIRED_ANSWERS = (
    "pregnant",
    "breastfeeding",
    "psychosis_or_mania",
    "uncontrolled_hypertension",
    "cardiovascular_disease",
    "aneurysm_avm_or_ich",
    "substance_use_disorder",
    "prior_ketamine_reaction",
)
OPTIONAL_ANSWERS = tuple(k for k in ANSWER_RULES if k not in REQUIRED_ANSWERS)

AGE_RULE = Rule(
    "CI-01",
    Level.HARD,
    "Under 18 (age {age}): esketamine is not approved for patients under 18 and the clinic treats adults only.",
    floor=Level.HARD,
)

#: Generic names first, then common US brand names. Matched case-insensitively as whole words,
#: so "Xanax 0.5 mg" matches and "amphetamine" does not match inside "lisdexamfetamine".
# fmt: off
MEDICATION_CLASSES: tuple[MedicationClass, ...] = (
    MedicationClass(
        "CI-10",
        "Benzodiazepine",
        (
            "alprazolam", "lorazepam", "clonazepam", "diazepam", "temazepam", "chlordiazepoxide",
            "midazolam", "oxazepam", "clorazepate", "triazolam", "estazolam", "flurazepam", "quazepam",
            "clobazam", "remimazolam",
            "xanax", "ativan", "klonopin", "valium", "restoril", "librium", "versed", "nayzilam",
            "tranxene", "halcion", "doral", "onfi", "sympazan",
        ),
    ),
    MedicationClass(
        "CI-11",
        "Opioid or other CNS depressant",
        (
            # opioids
            "morphine", "oxycodone", "hydrocodone", "hydromorphone", "oxymorphone", "codeine", "fentanyl",
            "methadone", "buprenorphine", "tramadol", "tapentadol", "meperidine", "levorphanol",
            "butorphanol", "nalbuphine", "pentazocine",
            "oxycontin", "percocet", "vicodin", "norco", "dilaudid", "suboxone", "subutex", "sublocade",
            "ultram", "nucynta", "demerol", "duragesic",
            # non-benzodiazepine sedative-hypnotics and barbiturates
            "zolpidem", "zaleplon", "eszopiclone", "phenobarbital", "butalbital", "secobarbital",
            "ambien", "sonata", "lunesta", "fioricet",
            # gabapentinoids, muscle relaxants, oxybate, sedating antihistamines, alcohol
            "gabapentin", "pregabalin", "carisoprodol", "cyclobenzaprine", "baclofen", "tizanidine",
            "methocarbamol", "sodium oxybate", "oxybate", "hydroxyzine", "diphenhydramine",
            "promethazine", "doxylamine", "alcohol",
            "neurontin", "lyrica", "soma", "flexeril", "zanaflex", "xyrem", "xywav", "benadryl",
            "phenergan", "vistaril", "atarax",
        ),
    ),
    MedicationClass(
        "CI-12",
        "Stimulant or MAOI",
        (
            # psychostimulants
            "amphetamine", "dextroamphetamine", "lisdexamfetamine", "methamphetamine", "methylphenidate",
            "dexmethylphenidate", "serdexmethylphenidate", "modafinil", "armodafinil",
            "adderall", "dexedrine", "zenzedi", "evekeo", "vyvanse", "desoxyn", "ritalin", "concerta",
            "daytrana", "focalin", "azstarys", "provigil", "nuvigil",
            # MAOIs
            "phenelzine", "tranylcypromine", "isocarboxazid", "selegiline", "rasagiline",
            "nardil", "parnate", "marplan", "emsam", "eldepryl", "zelapar", "azilect",
        ),
    ),
    MedicationClass(
        "CI-13",
        "Lamotrigine or another glutamate-release inhibitor",
        ("lamotrigine", "lamictal", "riluzole", "rilutek"),
    ),
    MedicationClass(
        "CI-14",
        "NMDA antagonist",
        (
            "memantine", "dextromethorphan", "amantadine",
            "namenda", "namzaric", "nuedexta", "auvelity", "gocovri", "osmolex", "symmetrel",
        ),
    ),
    MedicationClass(
        "CI-15",
        "Theophylline or aminophylline",
        ("theophylline", "aminophylline", "theo 24", "elixophyllin", "uniphyl", "theochron"),
    ),
    MedicationClass(
        "CI-16",
        "Strong CYP3A4/CYP2B6 inducer or inhibitor",
        (
            # inducers
            "rifampin", "rifampicin", "rifapentine", "carbamazepine", "phenytoin", "phenobarbital",
            "st john s wort", "st johns wort", "hypericum", "enzalutamide", "apalutamide", "mitotane",
            "efavirenz", "tegretol", "dilantin", "rifadin", "xtandi", "erleada", "sustiva",
            # inhibitors
            "ketoconazole", "itraconazole", "voriconazole", "posaconazole", "clarithromycin", "ritonavir",
            "cobicistat", "nefazodone", "ticlopidine", "clopidogrel",
            "paxlovid", "norvir", "sporanox", "vfend", "noxafil", "biaxin", "plavix",
        ),
    ),
)
# fmt: on

MEDICATION_TEXTS: dict[str, str] = {
    "CI-10": "Benzodiazepine ({names}): adds sedation, so watch sedation closely after the dose; higher "
    "benzodiazepine doses are linked to a weaker antidepressant response to ketamine.",
    "CI-11": "Opioid or other sedating medicine ({names}): adds sedation and the risk of slowed breathing; "
    "monitor sedation and oxygen saturation closely.",
    "CI-12": "Stimulant or MAOI ({names}): can raise blood pressure further after the dose; check blood "
    "pressure closely.",
    "CI-13": "Lamotrigine or a similar medicine ({names}): may reduce ketamine's side effects; its effect on "
    "the antidepressant benefit is unknown.",
    "CI-14": "NMDA antagonist ({names}): works like ketamine, so dissociation and side effects may add up "
    "(an assumed interaction; no label source).",
    "CI-15": "Theophylline or aminophylline ({names}): given with ketamine it may lower the seizure threshold.",
    "CI-16": "Strong CYP3A4/CYP2B6 inducer or inhibitor ({names}): changes how fast ketamine is cleared, so "
    "its effect may be weaker or stronger than expected.",
}

MEDICATION_RULES: dict[str, Rule] = {
    mc.code: Rule(mc.code, Level.WARN, MEDICATION_TEXTS[mc.code]) for mc in MEDICATION_CLASSES
}

ALL_RULES: dict[str, Rule] = {
    AGE_RULE.code: AGE_RULE,
    **{rule.code: rule for rule in ANSWER_RULES.values()},
    **MEDICATION_RULES,
}


# --- evaluation ----------------------------------------------------------------------------------

_NON_WORD = re.compile(r"[^0-9a-z]+")


def _words(text: str) -> str:
    """Lower-case words separated by single spaces, padded so whole-word tests are substring tests."""
    return " " + " ".join(_NON_WORD.split(text.casefold())).strip() + " "


_CLASS_WORDS: tuple[tuple[MedicationClass, tuple[str, ...]], ...] = tuple(
    (mc, tuple(_words(name) for name in mc.names)) for mc in MEDICATION_CLASSES
)


def classify_medications(medications: Iterable[str]) -> dict[str, list[str]]:
    """Map each class code to the entered names that belong to it, in the order entered."""
    found: dict[str, list[str]] = {}
    for entered in medications:
        words = _words(entered)
        for mc, names in _CLASS_WORDS:
            if any(name in words for name in names):
                found.setdefault(mc.code, []).append(entered.strip())
    return found


def age_on(date_of_birth: date, on: date) -> int:
    """Completed years (someone born on 29 February turns a year older on 1 March in other years)."""
    return on.year - date_of_birth.year - ((on.month, on.day) < (date_of_birth.month, date_of_birth.day))


def level_for(rule: Rule, overrides: Mapping[str, Any] | None) -> Level:
    """The location's level for a rule, else the default; never below the rule's floor."""
    level = rule.level
    wanted = (overrides or {}).get(rule.code)
    if wanted is not None:
        try:
            level = Level(wanted)
        except ValueError:
            logger.warning("ignoring unknown screening level for %s", rule.code)
    if rule.floor is not None and _RANK[level] < _RANK[rule.floor]:
        level = rule.floor
    return level


def flag(rule: Rule, overrides: Mapping[str, Any] | None, **fmt: Any) -> dict[str, str]:
    return {"code": rule.code, "level": level_for(rule, overrides).value, "text": rule.text.format(**fmt)}


def evaluate(
    *, answers: Mapping[str, Any], date_of_birth: date, on: date, levels: Mapping[str, Any] | None = None
) -> tuple[str, list[dict[str, str]]]:
    """Flags (ordered by code) and the eligibility they give.

    Any HARD flag -> ineligible; else any OVERRIDE flag -> review; else eligible.
    """
    flags: list[dict[str, str]] = []
    age = age_on(date_of_birth, on)
    if age < ADULT_AGE:
        flags.append(flag(AGE_RULE, levels, age=age))
    for key, rule in ANSWER_RULES.items():
        if answers.get(key) is True:
            flags.append(flag(rule, levels))
    for code, names in classify_medications(answers.get("medications") or []).items():
        flags.append(flag(MEDICATION_RULES[code], levels, names=", ".join(names)))
    flags.sort(key=lambda f: f["code"])
    return eligibility_of(flags), flags


def eligibility_of(flags: Iterable[Mapping[str, Any]]) -> str:
    levels = {f["level"] for f in flags}
    if Level.HARD in levels:
        return Eligibility.ineligible.value
    if Level.OVERRIDE in levels:
        return Eligibility.review.value
    return Eligibility.eligible.value


def flags_at(flags: Iterable[Mapping[str, Any]], level: Level) -> list[dict[str, Any]]:
    return [dict(f) for f in flags if f["level"] == level]
