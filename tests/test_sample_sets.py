"""The image models' compare rows carry a grid of draws for the report (``diagnostics["sample_sets"]``):
images of the problem's shape, pixel values in [0, 1] (binary for NADE / MADE)."""

import numpy as np
import pytest

from genzoo.registry import RunConfig
from genzoo.zoo import ENTRIES

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("entry, options, method, shape", [
    ("nade", {"pixels": 12}, "nade", (3, 4)),
    ("nade", {"pixels": 12}, "made", (3, 4)),
    ("flows_digits", {"quick": 1}, "realnvp", (8, 8)),
])
def test_image_models_draw_a_grid_for_the_report(entry, options, method, shape):
    e = ENTRIES[entry]
    result = e.method(method).fn(e.problem(options), RunConfig(seed=0, steps=5, progress=False))
    draws = result.diagnostics["sample_sets"]["digits"]
    assert draws.shape == (36, *shape)
    assert np.all((draws >= 0) & (draws <= 1))
    if entry == "nade":
        assert set(np.unique(draws)) <= {0.0, 1.0}
