"""Test helpers for marginsim and for packages that add margin methods.

- :func:`assert_lazy`: a context in which any dask compute fails (building a chunked run's graph
  must compute nothing), after xclim's ``testing.helpers.assert_lazy``.
- Hypothesis strategies of scenario-file mappings (after ``xarray.testing.strategies``):
  :func:`markets`, :func:`books` and :func:`scenarios` (a mixed book every built-in method
  applies to: index futures and an option on them, a stock with listed options, CFDs; several
  accounts; random prices, vols, rates and quantities).
- :func:`check_method`: the contract every registered method keeps, run on one scenario:
  building a chunked run computes nothing, chunk by chunk equals in memory, the order of the
  book's rows does not change account-level results, and the JSON contract round-trips
  (finite numbers, plain types). ``tests/test_method_contract.py`` runs it for every registered
  method; a package that registers a method can run it on its own.

Needs the test extra (``pip install 'marginsim[test]'``: hypothesis).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dask
import numpy as np
import xarray as xr
from hypothesis import strategies as st

from .api import load, margin
from .model import Inputs
from .registry import REGISTRY

__all__ = [
    "assert_lazy",
    "assert_results_equal",
    "markets",
    "books",
    "scenarios",
    "mixed_contracts",
    "check_method",
    "ORDER_DEPENDENT_DIMS",
]

AS_OF = "2026-11-20"


def _raise_on_compute(dsk: Any, keys: Any, **kwargs: Any) -> Any:
    raise AssertionError("dask computed while the graph was being built")


@contextlib.contextmanager
def assert_lazy() -> Iterator[None]:
    """A context in which any dask compute raises ``AssertionError`` (the graph must be lazy)."""
    with dask.config.set(scheduler=_raise_on_compute):
        yield


def assert_results_equal(
    got: xr.Dataset, want: xr.Dataset, *, atol: float = 1e-9, rtol: float = 1e-9
) -> None:
    """Same variables and dims; floats equal within ``atol`` + ``rtol`` x |want| [units of each
    variable], NaN where NaN; everything else exactly equal."""
    assert set(got.data_vars) == set(want.data_vars), set(got.data_vars) ^ set(want.data_vars)
    for name, v in want.data_vars.items():
        g = got[name]
        assert set(g.dims) == set(v.dims), (name, g.dims, v.dims)
        g = g.transpose(*v.dims)
        if v.dtype.kind in "fc":
            np.testing.assert_allclose(g.values, v.values, rtol=rtol, atol=atol, equal_nan=True, err_msg=name)
        else:
            np.testing.assert_array_equal(g.values, v.values, err_msg=name)


# ------------------------------------------------------------------------------------------------
# strategies
# ------------------------------------------------------------------------------------------------


def _num(low: float, high: float) -> st.SearchStrategy[float]:
    """Finite floats in [low, high]."""
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


@st.composite
def markets(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    """The ``market`` of the mixed book: an index ``IDX``, a large-cap stock ``MEGA`` (with the
    data portfolio margin needs), a currency pair ``EUR.USD`` and a CFD index ``US 500``; random
    prices [price units], vols and rates [decimal]."""
    vol = _num(0.08, 0.6)
    rate = _num(0.0, 0.06)
    return {
        "IDX": {"price": draw(_num(1000, 8000)), "vol": draw(vol), "rate": draw(rate)},
        "MEGA": {
            "price": draw(_num(20, 500)),
            "vol": draw(vol),
            "rate": draw(rate),
            "dividend_yield": draw(_num(0.0, 0.03)),
            "market_cap": 1.2e12,
            "shares_outstanding": 4.8e9,
            "adv": 3.0e7,
            "domicile": "US",
            "listing": "US",
            "sector": "technology",
            "product_class": "equity",
        },
        "EUR.USD": {"price": draw(_num(0.8, 1.4)), "vol": draw(vol), "rate": draw(rate)},
        "US 500": {"price": draw(_num(3000, 7000)), "vol": draw(vol), "rate": draw(rate)},
    }


def mixed_contracts(market: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The mixed book's contracts on ``market`` (strikes near the prices)."""
    idx = float(market["IDX"]["price"])
    mega = float(market["MEGA"]["price"])
    return {
        "IDX-DEC26": {"type": "future", "underlying": "IDX", "multiplier": 50, "expiry": "2026-12-18"},
        "IDX-MAR27": {"type": "future", "underlying": "IDX", "multiplier": 50, "expiry": "2027-03-19"},
        "IDX-MAR27-P": {
            "type": "put",
            "underlying": "IDX",
            "option_on": "future",
            "strike": round(0.95 * idx),
            "expiry": "2027-03-19",
            "multiplier": 50,
        },
        "MEGA": {"type": "stock", "underlying": "MEGA"},
        "MEGA-C": {
            "type": "call",
            "underlying": "MEGA",
            "option_on": "spot",
            "strike": round(1.08 * mega, 1),
            "expiry": "2027-01-15",
            "multiplier": 100,
        },
        "MEGA-P": {
            "type": "put",
            "underlying": "MEGA",
            "option_on": "spot",
            "strike": round(0.92 * mega, 1),
            "expiry": "2027-01-15",
            "multiplier": 100,
        },
        "EURUSD-CFD": {"type": "cfd", "underlying": "EUR.USD"},
        "US500-CFD": {"type": "cfd", "underlying": "US 500"},
    }


#: Quantity ranges per contract of the mixed book [contracts or shares].
_QUANTITY = {
    "IDX-DEC26": 10,
    "IDX-MAR27": 10,
    "IDX-MAR27-P": 20,
    "MEGA": 5000,
    "MEGA-C": 30,
    "MEGA-P": 30,
    "EURUSD-CFD": 200_000,
    "US500-CFD": 10,
}


@st.composite
def books(
    draw: st.DrawFn,
    market: Mapping[str, Mapping[str, Any]],
    accounts: Sequence[str] = ("a0", "a1", "a2"),
    max_positions: int = 10,
) -> list[dict[str, Any]]:
    """``positions`` of the mixed book on ``market``: 1 to ``max_positions`` rows over ``accounts``.

    CFD rows get an ``open_price`` within 5 % of the price and distinct ``opened`` times (the
    close-out order is by opening time), so that the book's row order carries no meaning.
    """
    names = list(_QUANTITY)
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from(names),
                st.integers(1, 1_000_000),
                st.sampled_from(list(accounts)),
                _num(-0.05, 0.05),
                st.booleans(),
            ),
            min_size=1,
            max_size=max_positions,
        )
    )
    contracts = mixed_contracts(market)
    out = []
    for i, (name, q, account, move, short) in enumerate(rows):
        qty = 1 + q % _QUANTITY[name]
        row: dict[str, Any] = {"contract": name, "quantity": -qty if short else qty, "account": account}
        if contracts[name]["type"] == "cfd":
            price = float(market[contracts[name]["underlying"]]["price"])
            row["open_price"] = round(price * (1 + move), 6)
            row["opened"] = f"2026-11-{10 + i % 9:02d}T{8 + i // 9:02d}:00:00"
        out.append(row)
    return out


@st.composite
def scenarios(
    draw: st.DrawFn, accounts: Sequence[str] = ("a0", "a1", "a2"), max_positions: int = 10
) -> dict[str, Any]:
    """A scenario-file mapping of the mixed book that every built-in method applies to: SPAN on
    the index, portfolio margin on the stock and its options, CFD margin, and the account layer
    (cash per account in the reporting currency, USD)."""
    market = draw(markets())
    positions = draw(books(market, accounts, max_positions))
    held = sorted({p["account"] for p in positions})  # a cash entry names an account of the book
    cash = dict(
        zip(
            held,
            draw(st.lists(_num(1_000, 2_000_000), min_size=len(held), max_size=len(held))),
        )
    )
    return {
        "name": "hypothesis-mixed-book",
        "as_of": AS_OF,
        "currency": "USD",
        "market": market,
        "contracts": mixed_contracts(market),
        "positions": positions,
        "span": {"combined_commodities": {"IDX": {"price_scan": 0.06, "vol_scan": 0.04}}},
        "portfolio_margin": {"cash": cash},
        "cfd": {"client": "retail", "accounts": {a: {"cash": c} for a, c in cash.items()}},
        "account": {},
    }


# ------------------------------------------------------------------------------------------------
# the method contract
# ------------------------------------------------------------------------------------------------

#: Result dims whose rows follow the book's order (positions, plan rows): left out of the
#: order-invariance check.
ORDER_DEPENDENT_DIMS = frozenset({"position", "movement", "liquidation", "stock"})


def _plain_json(obj: Any) -> None:
    """Every leaf is a str, bool, int, finite float or None; every key a str."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert isinstance(k, str), k
            _plain_json(v)
    elif isinstance(obj, list):
        for v in obj:
            _plain_json(v)
    else:
        assert obj is None or isinstance(obj, (str, bool, int, float)), type(obj)
        assert not isinstance(obj, float) or math.isfinite(obj), obj


def check_method(method: str, scenario: Mapping[str, Any], *, accounts_per_chunk: int = 1) -> xr.Dataset:
    """Run the contract every registered method keeps on one scenario; raise ``AssertionError``.

    1. Laziness: on chunked inputs, :func:`marginsim.margin` with ``compute=False`` builds the
       graph without computing anything.
    2. Chunked equals in memory: the chunked result, computed, equals the in-memory one.
    3. Row order: the book's rows reversed give the same values on every variable without a
       row-order dim (:data:`ORDER_DEPENDENT_DIMS`).
    4. JSON round trip: the method's part of the JSON contract is plain JSON (finite numbers,
       string keys) and survives ``json.dumps`` / ``json.loads`` unchanged.

    Parameters
    ----------
    method
        A registered method name.
    scenario
        A scenario-file mapping the method applies to (e.g. drawn from :func:`scenarios`).
    accounts_per_chunk
        Accounts per chunk of the chunked run.

    Returns
    -------
    xarray.Dataset
        The in-memory result.
    """
    if method not in REGISTRY:
        raise KeyError(f"no method {method!r} is registered")
    inputs: Inputs = load(dict(scenario))
    whole = margin(inputs, methods=[method])
    want = whole[method]

    with assert_lazy():
        lazy = margin(inputs, methods=[method], chunks=accounts_per_chunk, compute=False)[method]
    assert all(v.chunks is not None for v in lazy.data_vars.values()), "a chunked run gave in-memory data"
    got = margin(inputs, methods=[method], chunks=accounts_per_chunk)[method]
    assert_results_equal(got, want)

    reordered = dict(scenario)
    reordered["positions"] = list(reversed(list(scenario["positions"])))
    other = margin(reordered, methods=[method])[method]
    keep = [n for n, v in want.data_vars.items() if not (set(v.dims) & ORDER_DEPENDENT_DIMS)]
    labels = {d: want[d].values for d in want[keep].dims if d in want.coords and d in other.coords}
    assert_results_equal(other[keep].sel(labels), want[keep], atol=1e-6)

    doc = whole.to_dict()
    part = {a: obj[method] for a, obj in doc["accounts"].items() if method in obj}
    assert part, f"method {method!r} gave no account in the JSON contract"
    _plain_json(part)
    assert json.loads(json.dumps(part, allow_nan=False)) == part
    return want
