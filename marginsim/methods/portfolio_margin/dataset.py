"""The result Dataset: named dims, coords, attrs (units, currency, descriptions from :data:`.OUTPUTS`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ...kernels import portfolio_margin as K
from ...model import Inputs
from ...outputs import describe
from ...params.portfolio_margin import PortfolioMarginParams
from .book import PmBook
from .components import AddOns, Concentration, Scan, SingleName
from .groups import SINGLE_NAME_METHODS
from .outputs import OUTPUTS
from .requirement import Equity, Requirement
from .stresses import VOL_POINTS, vol_shift

__all__ = ["result_dataset"]


def result_dataset(
    inputs: Inputs,
    params: PortfolioMarginParams,
    book: PmBook,
    scan: Scan,
    conc: Concentration,
    sn: SingleName,
    add: AddOns,
    req: Requirement,
    eq: Equity,
    market_value: np.ndarray,
    delta_shares: np.ndarray,
) -> xr.Dataset:
    """Assemble the result of :func:`marginsim.methods.portfolio_margin.portfolio_margin`.

    Arrays over grid points come flattened (last axis ``G``); each is given the grid dims here.
    """
    sc = inputs.scenario
    groups, grid = book.groups, book.grid
    n_a, n_c, n_g = book.n_accounts, book.n_groups, grid.size
    gd, gshape = grid.dims, grid.shape
    top_n = params.concentration.top_n
    held = book.held

    def a_(x: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
        return (("account", *gd), np.asarray(x).reshape((n_a, *gshape)))

    def ac(x: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
        x = np.broadcast_to(np.asarray(x)[..., None] if np.ndim(x) == 2 else x, (n_a, n_c, n_g))
        return (("account", "group", *gd), x.reshape((n_a, n_c, *gshape)))

    fr = K.scan_fractions(params.points_per_side)
    price_move = xr.DataArray(K.scan_moves(fr, groups.up, groups.down), dims=("group", "price_point"))
    if "price_scan_scale" in inputs.grid.coords:
        price_move = (price_move * inputs.grid["price_scan_scale"]).clip(min=-1.0)
    n_p, n_v, n_m = 2 * params.points_per_side, len(VOL_POINTS), len(SINGLE_NAME_METHODS)
    variables: dict[str, Any] = {
        "maintenance": a_(req.maintenance),
        "initial": a_(req.initial),
        "binding": a_(req.binding),
        "scan": a_(req.scan),
        "extreme": a_(req.extreme),
        "minimum": a_(req.minimum),
        "concentration": a_(conc.total),
        "single_name": a_(sn.total),
        "large_position": a_(req.large_position),
        "days_to_liquidate": a_(req.days_to_liquidate),
        "single_name_driver": a_(sn.driver),
        "concentration_driver": (
            ("account", "driver_rank", *gd),
            np.moveaxis(conc.drivers, -1, 1).reshape((n_a, top_n, *gshape)).astype(str),
        ),
        "base": a_(req.base),
        "market_value": a_(market_value),
        "equity": a_(eq.equity),
        "available_funds": a_(eq.equity - req.initial),
        "excess_liquidity": a_(eq.equity - req.maintenance),
        "opening_equity_met": a_(eq.opening_equity_met),
        "minimum_equity_met": a_(eq.minimum_equity_met),
        "product_class": ("group", np.array(groups.product_class, dtype=object)),
        "us_security": ("group", groups.is_us),
        "initial_ratio": ("group", groups.ratio),
        "group_currency": ("group", np.array(groups.currency, dtype=object)),
        "group_fx": ("group", groups.fx),
        "scan_range_up": ("group", groups.up),
        "scan_range_down": ("group", groups.down),
        "group_scan": ac(scan.group_scan),
        "group_minimum": ac(scan.group_minimum),
        "option_contracts": (("account", "group"), scan.option_contracts),
        "group_base": ac(scan.group_base),
        "group_extreme": ac(scan.group_extreme),
        "concentration_loss_top": ac(conc.loss_top),
        "concentration_loss_rest": ac(conc.loss_rest),
        "concentration_top": ac(np.moveaxis(conc.is_top, -1, 1)),
        "concentration_contribution": ac(np.moveaxis(conc.contribution, -1, 1)),
        "group_single_name": ac(sn.group_loss),
        "single_name_move_up": (("group", "single_name_method"), groups.sn_moves[..., 0]),
        "single_name_move_down": (("group", "single_name_method"), -groups.sn_moves[..., 1]),
        "single_name_loss": (
            ("account", "group", "single_name_method", *gd),
            sn.loss.reshape((n_a, n_c, n_m, *gshape)),
        ),
        "single_name_applies": (("group", "single_name_method"), groups.sn_applies),
        "delta_shares": ac(delta_shares),
        "shares_outstanding_fraction": ac(np.where(held[..., None], add.shares_outstanding_fraction, np.nan)),
        "large_position_charge": ac(add.large_position),
        "adv_multiple": ac(np.where(held[..., None], add.adv_multiple, np.nan)),
        "days_to_liquidate_charge": ac(add.days_to_liquidate),
        "price_move": price_move,
        "scan_loss": (
            ("account", "group", "price_point", "vol_point", *gd),
            scan.loss.reshape((n_a, n_c, n_p, n_v, *gshape)),
        ),
        "held": (("account", "group"), held),
    }
    coords: dict[str, Any] = {
        "account": inputs.accounts,
        "group": groups.names,
        "price_point": fr,
        "vol_point": np.asarray(VOL_POINTS),
        "single_name_method": list(SINGLE_NAME_METHODS),
        "driver_rank": np.arange(1, top_n + 1),
        **grid.coords,
    }
    shift_size, shift_kind = vol_shift(params)
    ds = xr.Dataset(
        variables,
        coords=coords,
        attrs={
            "method": "portfolio_margin",
            "currency": sc.currency,
            "scenario": sc.name,
            "vol_shift": shift_size,
            "vol_shift_kind": shift_kind,
            "extreme_multiple": params.extreme.multiple,
            "extreme_cover_fraction": params.extreme.cover_fraction,
        },
    )
    return describe(ds, OUTPUTS)
