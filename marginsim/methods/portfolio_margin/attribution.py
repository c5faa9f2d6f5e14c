"""Portfolio-margin attribution: each position's part of its account's maintenance.

``maintenance = max(base, extreme, concentration, single_name) + large_position`` splits into a
part per class group (its part of the binding component, plus its large-position charge). The
rule, per account, class group and grid point [reporting currency]:

- **scan**: the position's loss (quantity x loss of one contract, losses positive) at the class
  group's worst scan point (the price and vol point of its scan); nothing when the group's scan is
  floored at 0 (a gain at every point);
- **the rest of the group's part** (option minimum, extreme scan, concentration or single-name
  component where one binds instead of the scan, large-position charge): the group's part less
  the scan parts, pro rata to the positions' gross notional (|quantity| x multiplier x FX x
  underlying level; equal shares when it is 0).

The contributions of an account's positions sum to its ``maintenance``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ...kernels import pricing
from ...kernels.allocation import group_total, pro_rata
from ...kernels.grouping import group_sum
from ...model import Inputs, flat_grid
from ...params.portfolio_margin import PortfolioMarginParams
from . import components
from .book import pm_book
from .groups import pm_contract_mask
from .requirement import requirement
from .revaluation import delta_shares, market_of, stress_pnl
from .stresses import stresses

__all__ = ["portfolio_margin_attribution"]


def portfolio_margin_attribution(inputs: Inputs, result: xr.Dataset, engine: pricing.Engine = "auto") -> xr.Dataset:
    """The contribution of each portfolio-margin position to its account's maintenance.

    Parameters
    ----------
    inputs
        The in-memory data model the result was computed from.
    result
        The portfolio-margin result (:func:`marginsim.methods.portfolio_margin.portfolio_margin`).
    engine
        Pricing engine, as for the margin.

    Returns
    -------
    xarray.Dataset
        ``contribution`` with dims ``(position, grid dims)`` [reporting currency], over the
        positions the method margins (stocks and options on spot); per account and grid point
        they sum to ``maintenance``.
    """
    sc = inputs.scenario
    params = sc.portfolio_margin or PortfolioMarginParams()
    book = pm_book(inputs, params)
    gd, gshape = book.grid.dims, book.grid.shape
    if book.quantity.size == 0:  # no position the method margins
        empty = np.zeros((0, *gshape))
        return xr.Dataset(
            {"contribution": (("position", *gd), empty)}, coords={"position": np.zeros(0, np.int64)}
        )
    st = stresses(book.groups, params)
    mk = market_of(inputs, book, engine)
    unit_pnl = stress_pnl(inputs, book, mk, st, params, engine, per_contract=True)  # (K, S, G)
    n_a, n_c, n_g = book.n_accounts, book.n_groups, book.grid.size
    pnl = group_sum(book.member, unit_pnl).reshape(n_a, n_c, unit_pnl.shape[1], n_g)  # (A, C, S, G)
    scan = components.scan(pnl, st, book, params, sc)
    conc = components.concentration(pnl, st, book, params)
    sn = components.single_name(pnl, st, book)
    add = components.add_ons(pnl, st, book, params, delta_shares(book, mk, engine), scan.group_base)
    req = requirement(book, scan, conc, sn, add)
    core = req.group_core if req.group_core is not None else np.zeros((n_a, n_g, n_c))
    group_part = np.moveaxis(core, -1, 1) + add.large_position  # (A, C, G)

    k, q = book.pos_contract, np.asarray(book.quantity, dtype=float)
    cell = book.pos_account * n_c + book.group_of_k[k]  # (N,) (account, class group) of each position
    # the worst scan point of each (account, class group), and each position's loss there
    block = pnl[:, :, st.blocks["scan"]]
    block = block.reshape(n_a * n_c, block.shape[2], n_g)  # (A C, S_scan, G)
    worst = np.argmin(block, axis=1) if block.size else np.zeros((n_a * n_c, n_g), dtype=np.int64)
    unit_scan = unit_pnl[:, st.blocks["scan"]]  # (K, S_scan, G)
    at = np.take_along_axis(unit_scan[k], worst[cell][:, None, :], axis=1)[:, 0]  # (N, G)
    scan_part = np.where(scan.group_scan.reshape(n_a * n_c, n_g)[cell] > 0.0, -q[:, None] * at, 0.0)
    rest = group_part.reshape(n_a * n_c, n_g) - group_total(cell, scan_part, n_a * n_c)
    level = flat_grid(mk.level, ["contract"], book.grid.dims, book.grid.shape)  # (K, G)
    unit = np.asarray(mk.unit.transpose("contract", ...).values, dtype=float).reshape(book.n_contracts, -1)
    gross = np.abs(q)[:, None] * unit[k] * level[k]
    contribution = scan_part + (pro_rata(rest, cell, gross) if q.size else np.zeros((0, n_g)))

    positions = inputs.book["position"].values[
        pm_contract_mask(inputs.contracts)[inputs.book["contract_index"].values]
    ]
    return xr.Dataset(
        {"contribution": (("position", *gd), contribution.reshape((q.size, *gshape)))},
        coords={"position": positions},
    )
