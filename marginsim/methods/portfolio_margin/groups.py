"""Class groups: the underlyings of the method's contracts and their policy data.

Every stock and every option on a spot underlying belongs to the class group of its underlying.
A class group's product class sets its scan range; its listing, domicile, market cap and sector
set which single-name methods apply to it and their moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from ...errors import InputError
from ...kernels import portfolio_margin as K
from ...kernels import pricing
from ...model import Inputs
from ...params.portfolio_margin import PortfolioMarginParams
from ...scenario import Underlying

__all__ = ["SINGLE_NAME_METHODS", "ClassGroups", "class_groups", "pm_contract_mask"]

#: Single-name methods, in evaluation order.
SINGLE_NAME_METHODS = ("small_cap", "china_concept", "default", "hk_property")

# an underlying without a scenario-file entry (e.g. from a clearing-house file): no stock data
_NO_DATA = Underlying(price=1.0)


@dataclass
class ClassGroups:
    """Per class group (``C`` of them, in the order of the underlyings) data of the method.

    Attributes
    ----------
    names
        Underlying names.
    product_class
        Product class of each class group.
    up, down
        Scan range up and down [fraction of price], shape ``(C,)``.
    is_stock
        Equity class groups (the single-name and large-position stresses apply), shape ``(C,)``.
    is_us
        US securities (initial ratio), shape ``(C,)``.
    ratio
        Initial / maintenance ratio [1], shape ``(C,)``.
    shares_outstanding
        [shares], NaN where unknown or not a stock, shape ``(C,)``.
    adv
        Average daily volume [shares per day], NaN where unknown or not a stock, shape ``(C,)``.
    sn_applies
        Whether each single-name method applies, shape ``(C, M)``.
    sn_moves
        ``[+up, -down]`` move of each single-name method [fraction of price], shape ``(C, M, 2)``.
    currency
        Margin currency of each class group.
    fx
        Reporting currency per unit of the class group's currency, shape ``(C,)``.
    """

    names: list[str]
    product_class: list[str]
    up: np.ndarray
    down: np.ndarray
    is_stock: np.ndarray
    is_us: np.ndarray
    ratio: np.ndarray
    shares_outstanding: np.ndarray
    adv: np.ndarray
    sn_applies: np.ndarray
    sn_moves: np.ndarray
    currency: list[str]
    fx: np.ndarray


def pm_contract_mask(contracts: xr.Dataset) -> np.ndarray:
    """Contracts of the method: stocks and options on a spot (Black-Scholes model code), shape ``(K,)``."""
    return (contracts["type"].values == "stock") | (
        contracts["is_option"].values & (contracts["model"].values == pricing.BSM)
    )


def class_groups(inputs: Inputs, und_index: np.ndarray, params: PortfolioMarginParams) -> ClassGroups:
    """Per-class-group data from the market entries (a loop over underlyings, not positions).

    Parameters
    ----------
    inputs
        The data model.
    und_index
        Index along ``inputs.market``'s ``underlying`` of each class group, shape ``(C,)``.
    params
        Method parameters.

    Returns
    -------
    ClassGroups

    Raises
    ------
    InputError
        A China-concept stock without ``market_cap``.
    """
    sc = inputs.scenario
    names = [str(inputs.market["underlying"].values[u]) for u in und_index]
    n_c = len(names)
    sn = params.single_name
    pcs: list[str] = []
    up = np.zeros(n_c)
    down = np.zeros(n_c)
    is_stock = np.zeros(n_c, dtype=bool)
    is_us = np.zeros(n_c, dtype=bool)
    so = np.full(n_c, np.nan)
    adv = np.full(n_c, np.nan)
    applies = np.zeros((n_c, len(SINGLE_NAME_METHODS)), dtype=bool)
    moves = np.zeros((n_c, len(SINGLE_NAME_METHODS), 2))
    currency = [str(c) for c in inputs.market["currency"].values[und_index]]
    fx = inputs.market["fx"].values[und_index].astype(float)
    for c, name in enumerate(names):
        u = sc.market.get(name) or _NO_DATA
        pc = u.product_class or params.default_product_class
        pcs.append(pc)
        rng = params.ranges[pc]
        up[c], down[c] = rng.up, rng.down
        listing = (u.listing or "").upper()
        domicile = (u.domicile or "").upper()
        house = params.dynamic_house_scan.get(listing)
        if house is not None:
            up[c], down[c] = max(up[c], house), max(down[c], house)
        is_us[c] = listing == "US" if u.listing else currency[c] == "USD"
        if pc != "equity":
            continue
        is_stock[c] = True
        so[c] = np.nan if u.shares_outstanding is None else u.shares_outstanding
        adv[c] = np.nan if u.adv is None else u.adv
        cap = u.market_cap
        if cap is not None and cap <= sn.small_cap.max_market_cap:
            applies[c, 0] = True
            moves[c, 0] = K.stress_moves(*K.market_cap_moves(cap, sn.small_cap.market_cap_change))
        if domicile in sn.china_concept.domiciles:
            if cap is None:
                raise InputError(
                    "a China-concept stock (domicile "
                    f"{domicile}) needs market_cap [USD] for its single-name stress",
                    file=sc.file,
                    key_path=("market", name, "market_cap"),
                )
            applies[c, 1] = True
            moves[c, 1] = K.stress_moves(*K.market_cap_moves(cap, sn.china_concept.market_cap_change))
        hk = sn.hk_property
        if (listing in hk.countries or domicile in hk.countries) and (
            u.sector or ""
        ).strip().lower() in hk.sectors:
            applies[c, 3] = True
            moves[c, 3] = K.stress_moves(hk.move, hk.move)
        if sn.default.applies_to_all or not applies[c].any():
            applies[c, 2] = True
            moves[c, 2] = K.stress_moves(sn.default.up, sn.default.down)
    ratio = np.where(is_us, params.initial_ratio_us, params.initial_ratio_non_us)
    return ClassGroups(names, pcs, up, down, is_stock, is_us, ratio, so, adv, applies, moves, currency, fx)
