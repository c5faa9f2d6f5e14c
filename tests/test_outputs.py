"""Helpers of marginsim.outputs that the methods' JSON writers share."""

from __future__ import annotations

import numpy as np

from marginsim.outputs import rows_per_account


def test_rows_per_account_by_name_keeps_row_order_and_drops_unknown_owners():
    owner = np.array(["b", "a", "x", "b", "a"], dtype=object)
    assert rows_per_account(owner, ["a", "b", "c"]) == [[1, 4], [0, 3], []]


def test_rows_per_account_by_index():
    assert rows_per_account(np.array([1, 0, 1, 5, -1]), ["a", "b"]) == [[1], [0, 2]]


def test_rows_per_account_without_rows_or_accounts():
    assert rows_per_account(np.array([], dtype=object), ["a", "b"]) == [[], []]
    assert rows_per_account(np.array(["a"]), []) == []
