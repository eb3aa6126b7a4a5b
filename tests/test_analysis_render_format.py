"""Colour-bar tick format of the field renders: one notation per bar, ticks told apart."""

import pytest

from tomocell.studies.analysis_render import bar_format


@pytest.mark.parametrize("lo,hi", [(997.0, 1000.0), (9.16e-6, 1.28e-4), (0.709, 0.765), (-1.15, -0.154), (0.0, 1.0),
                                   (2e4, 3e4)])
def test_bar_ticks_distinct_and_one_notation(lo, hi):
    fmt = bar_format(lo, hi)
    ticks = [fmt % v for v in (lo, 0.5 * (lo + hi), hi)]
    assert len(set(ticks)) == 3, ticks
    assert len({"e" in t for t in ticks}) == 1, ticks


def test_c_e_range_prints_without_exponent():
    # the defect seen in fields_render.png: %.3g printed 997 / 999 / 1e+03 on one bar
    assert [bar_format(997.0, 1000.0) % v for v in (997.0, 1000.0)] == ["997.0", "1000.0"]
