"""Stage plans: they multiply to the scale, never exceed 2x a stage, and end at the exact output size."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.stages import MAX_SCALE, output_size, stage_factors, stage_sizes


@pytest.mark.parametrize(("scale", "count"), [(1.5, 1), (2, 1), (2.01, 2), (3, 2), (4, 2), (4.5, 3), (8, 3), (16, 4)])
def test_stage_count(scale, count):
    assert len(stage_factors(scale)) == count


def test_four_x_is_two_two_x_stages():
    assert stage_factors(4) == pytest.approx([2.0, 2.0])


@given(st.floats(min_value=1.001, max_value=MAX_SCALE))
def test_factors_multiply_to_scale_and_stay_within_2x(scale):
    factors = stage_factors(scale)
    assert math.prod(factors) == pytest.approx(scale, rel=1e-9)
    assert all(1.0 < f <= 2.0 + 1e-12 for f in factors)


@given(st.integers(1, 3000), st.integers(1, 3000), st.floats(min_value=1.001, max_value=MAX_SCALE))
def test_sizes_end_exactly_at_output_size_and_grow_gently(width, height, scale):
    sizes = stage_sizes(width, height, scale)
    assert sizes[-1] == output_size(width, height, scale)
    previous = (width, height)
    for size in sizes:
        assert previous[0] <= size[0] <= 2 * previous[0]
        assert previous[1] <= size[1] <= 2 * previous[1]
        previous = size


@pytest.mark.parametrize("bad", [1, 1.0, 0.5, 0, -2, float("nan"), float("inf"), 17, "2"])
def test_bad_scales_are_refused_with_the_value_named(bad):
    with pytest.raises(ValueError, match="scale"):
        stage_factors(bad)
