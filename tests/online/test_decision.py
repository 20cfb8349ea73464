"""How the opinions combine into a label: judges and known defects can only make an ok frame unsure."""

import pytest

from musc_online.online.decision import combine_opinions


@pytest.mark.parametrize(
    ("combined", "judged", "known_defect", "anchor", "label"),
    [
        ("ok", "ok", None, "judges", "ok"),
        ("ok", "unsure", None, "judges", "unsure"),
        ("ok", "defect", None, "judges", "unsure"),
        ("ok", "defect", None, "none", "ok"),  # the paper: the window and judges decide together
        ("ok", None, None, "judges", "ok"),  # no judges' opinion (no judges, or their band unset)
        ("ok", "ok", "crack", "judges", "unsure"),  # looks like a confirmed defect
        ("ok", "ok", "crack", "none", "unsure"),
        ("defect", "ok", None, "judges", "defect"),  # the judges may not cover this variant
        ("unsure", "ok", None, "judges", "unsure"),
    ],
)
def test_combine_opinions(combined, judged, known_defect, anchor, label):
    decided, opinions = combine_opinions(combined, judged, known_defect, anchor)
    assert decided == label
    assert opinions == {"combined": combined, "judges": judged, "known_defect": known_defect}
