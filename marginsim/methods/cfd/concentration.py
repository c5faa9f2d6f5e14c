"""Concentration margin when CFD and stock positions are margined together (``spec/cfd.md`` section 7).

Per account and grid point: the stress loss of an adverse move of the largest positions (net per
underlying, CFD + stock) and a smaller move of the rest, against the standard requirement (CFD
maintenance + stock maintenance); the combined maintenance is the larger.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ...model import Inputs
from ...params.cfd import CfdConcentrationParams, CfdParams
from .positions import by_group, open_on_arrival

__all__ = ["add_concentration", "concentration_description"]


def concentration_description(conc: CfdConcentrationParams) -> str:
    """The ``concentration_loss`` description with the file's stresses."""
    return (
        f"loss of a {conc.largest_move:.0%} adverse move of the {conc.largest_count} largest "
        f"positions (net per underlying, CFD + stock) and {conc.other_move:.0%} of the rest"
    )


def add_concentration(
    ds: xr.Dataset,
    inputs: Inputs,
    params: CfdParams,
    is_stock: np.ndarray,
    cfd_rows: np.ndarray,
    p_und: np.ndarray,
    qty: np.ndarray,
    mf: np.ndarray,
    bd: list[str],
    has_step: bool,
) -> None:
    """Concentration stress of CFD + stock positions per account and grid point (in place).

    Parameters
    ----------
    ds
        The CFD result so far (with its position variables).
    inputs
        The data model.
    params
        The CFD parameters (``cfd.concentration``).
    is_stock
        Per book row: a stock position.
    cfd_rows
        The CFD rows of the book.
    p_und, qty, mf
        Per CFD position: underlying index, quantity [contracts], value factor (multiplier x FX
        [reporting currency per price unit]).
    bd
        The grid dims other than ``step``.
    has_step
        Whether the grid has a ``step`` dim.
    """
    conc = params.concentration
    book, contracts, market = inputs.book, inputs.contracts, inputs.market
    n_a = ds.sizes["account"]
    n_u = market.sizes["underlying"]
    stock_rows = np.flatnonzero(is_stock)
    pos_acct = book["account_index"].values
    has_stock = np.zeros(n_a, dtype=bool)
    has_stock[pos_acct[stock_rows]] = True
    # CFD positions of the classes margined with stocks (share CFDs by default)
    keep = np.isin(ds["cfd_class"].values, conc.cfd_classes) if cfd_rows.size else np.zeros(0, bool)
    has_cfd = np.zeros(n_a, dtype=bool)
    has_cfd[pos_acct[cfd_rows[keep]]] = True
    applies = {"auto": has_stock & has_cfd, "always": has_stock | has_cfd, "never": np.zeros(n_a, bool)}[
        conc.mode
    ]
    ds["concentration_applies"] = ("account", applies)
    sdims = (*bd, *(["step"] if has_step else []))
    shape = (n_a, *(ds.sizes[d] for d in sdims))
    if not applies.any():  # the same variables, NaN: a result's variables never depend on the book's data
        nan_ = np.full(shape, np.nan)
        _put_concentration(ds, ("account", *sdims), nan_, nan_, np.zeros(shape, dtype=bool))
        return
    price = market["price"].transpose("underlying", *sdims).values.reshape(n_u, -1)  # (U, G)
    # CFD exposure of the positions open on arrival at the step (before its close-out)
    open_pre = open_on_arrival(ds, bd, has_step)
    n_p, n_b, n_s = open_pre.shape
    open_pre = open_pre.reshape(n_p, n_b * n_s) & keep[:, None]  # (P, G) in (bd..., step) order
    p_acct = pos_acct[cfd_rows]
    cfd_val = qty[:, None] * mf[:, None] * price[p_und] * open_pre  # (P, G)
    rows = p_acct * n_u + p_und
    exposure = by_group(rows, cfd_val, n_a * n_u)
    s_und = contracts["underlying_index"].values[book["contract_index"].values[stock_rows]]
    s_mf = (
        book["quantity"].values[stock_rows]
        * contracts["multiplier"].values[book["contract_index"].values[stock_rows]]
        * market["fx"].values[s_und]
    )
    s_val = s_mf[:, None] * price[s_und]  # (Q, G)
    s_acct = pos_acct[stock_rows]
    exposure = exposure + by_group(s_acct * n_u + s_und, s_val, n_a * n_u)
    exposure = np.abs(exposure.reshape(n_a, n_u, -1))  # (A, U, G)
    ranked = -np.sort(-exposure, axis=1)
    moves = np.full(n_u, conc.other_move)
    moves[: min(conc.largest_count, n_u)] = conc.largest_move
    loss = (ranked * moves[None, :, None]).sum(axis=1)  # (A, G)
    stock_std = conc.stock_maintenance * by_group(s_acct, np.abs(s_val), n_a)
    mm_pos = ds["position_maintenance"].transpose("position", *bd).values.reshape(cfd_rows.size, n_b)
    mm_pos = (np.nan_to_num(mm_pos)[:, :, None] * open_pre.reshape(cfd_rows.size, n_b, n_s)).reshape(
        cfd_rows.size, n_b * n_s
    )
    cfd_mm = by_group(p_acct, mm_pos, n_a)
    standard = cfd_mm + stock_std
    nan = ~applies[:, None]
    _put_concentration(
        ds,
        ("account", *sdims),
        np.where(nan, np.nan, loss).reshape(shape),
        np.where(nan, np.nan, standard).reshape(shape),
        ((loss > standard) & applies[:, None]).reshape(shape),
    )


def _put_concentration(
    ds: xr.Dataset, dims: tuple[str, ...], loss: np.ndarray, standard: np.ndarray, binding: np.ndarray
) -> None:
    """The concentration variables (NaN for accounts it does not apply to)."""
    ds["concentration_loss"] = (dims, loss)
    ds["standard_requirement"] = (dims, standard)
    ds["combined_maintenance"] = (dims, np.maximum(loss, standard))
    ds["concentration_binding"] = (dims, binding)
