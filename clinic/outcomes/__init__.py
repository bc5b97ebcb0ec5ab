"""Outcome measures (PHQ-9, GAD-7) at visits: scores, course trends and the item-9 safety alert."""
