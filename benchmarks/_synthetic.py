"""Pieces of the synthetic SPAN books the benchmark scripts share (imported as a sibling module)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def market(unds: Sequence[str], prices: np.ndarray, vols: np.ndarray, rate: float = 0.03) -> dict:
    """The scenario file's ``market`` section for the synthetic underlyings."""
    return {u: {"price": float(p), "vol": float(v), "rate": rate} for u, p, v in zip(unds, prices, vols)}


def span_parameters(unds: Sequence[str]) -> dict:
    """The scenario file's ``span`` section: 8 % / 4-vol scans, SOM 10, a flat calendar spread at 25
    per combined commodity, and inter spreads (50 % credit) between neighbouring pairs."""
    return {
        "combined_commodities": {
            u: {
                "price_scan": 0.08,
                "vol_scan": 0.04,
                "som": {"rate": 10},
                "intra_spreads": [
                    {"priority": 1, "rate": 25, "legs": [{"tier": 0, "side": "A"}, {"tier": 0, "side": "B"}]}
                ],
            }
            for u in unds
        },
        "inter_spreads": [
            {
                "priority": i,
                "credit_rate": 0.5,
                "legs": [{"group": unds[2 * i], "side": "A"}, {"group": unds[2 * i + 1], "side": "B"}],
            }
            for i in range(len(unds) // 2)
        ],
    }
