from __future__ import annotations

from clinic.core.errors import Conflict


class ScreeningIncomplete(Conflict):
    code = "screening_incomplete"
    title = "The patient has no screening on file"


class PatientIneligible(Conflict):
    code = "patient_ineligible"
    title = "The patient is not eligible for treatment"


class ScreeningNeedsReview(Conflict):
    code = "screening_needs_review"
    title = "The screening needs a prescriber's risk/benefit review"


class RemsEnrollmentRequired(Conflict):
    code = "rems_enrollment_required"
    title = "The patient must be enrolled in the SPRAVATO REMS before esketamine"


class OverrideNotAllowed(Conflict):
    code = "override_not_allowed"
    title = "This screening cannot be overridden"


class AlreadyEnrolled(Conflict):
    code = "rems_already_enrolled"
    title = "The patient is already enrolled in the REMS"


class ScreeningReviewPending(Conflict):
    code = "screening_review_pending"
    title = "A prescriber must review the screening that cleared earlier flags"


class ReviewNotAllowed(Conflict):
    code = "review_not_allowed"
    title = "This screening cannot be reviewed"
