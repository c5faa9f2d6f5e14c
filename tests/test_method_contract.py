"""Every registered method keeps the method contract (marginsim.testing.check_method) on random
mixed books: a chunked run's graph computes nothing, chunked equals in memory, the book's row
order does not change account-level results, and its JSON is plain and round-trips."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from marginsim.registry import REGISTRY
from marginsim.testing import check_method, scenarios


# every registered method, the account layer included (two failures this test found are fixed;
# see the regression tests at the end of tests/test_account.py)
@pytest.mark.parametrize("method", list(REGISTRY))
# no shrinking: each example runs a method five times (a failure prints its scenario as drawn)
@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
)
@given(scenario=scenarios())
def test_every_registered_method_keeps_the_contract(method, scenario):
    result = check_method(method, scenario)
    assert result.sizes.get("account", 0) >= 1
