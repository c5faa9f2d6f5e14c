"""Margining a planned SPAN book: one pass of compiled kernels over the (account, combined commodity)
pairs the book holds (:mod:`marginsim.kernels.span_pairs`).

Scanning risk, active scenario and price risk per pair, net deltas by contract month, super
inter-commodity spread credit (on the months, before the intra spreads), intra-commodity spread and
spot-month charges, inter-commodity spread credit, short option minimum, combined commodity risk,
then the account sums (SPAN risk, net option value, maintenance and initial, each with the
exposure margin when the scenario asks for one). Everything here is numpy: the Dataset is built by :mod:`.dataset`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from ...kernels import span as K
from ...kernels import span_pairs as SP
from .plan import _Plan

__all__: list[str] = []


@dataclass
class _BookMargin:
    """SPAN of a book as kernel arrays: per held pair (P pairs, G grid points flattened) in the
    combined commodity's margin currency unless said otherwise, per account (A) in the reporting
    currency."""

    pairs: SP.Pairs  # the (account, combined commodity) pairs held
    pos_a: np.ndarray  # (N,) account of each position
    pos_k: np.ndarray  # (N,) plan contract of each position
    fx: np.ndarray  # (P, 1) margin currency -> reporting currency
    scan_risk: np.ndarray  # (P, G)
    active: np.ndarray  # (P, G) 0-based scenario of the scanning risk
    intra: np.ndarray  # (P, G) intra-commodity spread charge
    spot: np.ndarray  # (P, G) spot-month charge
    credit: np.ndarray  # (P, G) inter-commodity spread credit
    som: np.ndarray  # (P, 1) short option minimum
    risk_cc: np.ndarray  # (P, G) combined commodity risk
    loss: np.ndarray | None  # (P, G, S) loss per scenario (with ``scan_loss``)
    nov: np.ndarray  # (A, G) net option value [reporting currency]
    span_risk: np.ndarray  # (A, G) sum of combined commodity risks [reporting currency]
    maintenance: np.ndarray  # (A, G) [reporting currency]
    initial: np.ndarray  # (A, G) [reporting currency]
    super_credit: np.ndarray | None = None  # (P, G) super inter-commodity spread credit (with super spreads)
    exposure: np.ndarray | None = None  # (A, 1) exposure margin [reporting currency] (with exposure_margin)
    netted: bool = False  # the book has repeated (account, contract) rows, netted (:func:`_net_positions`)


def _book_in_scope(book: xr.Dataset, scope: np.ndarray) -> xr.Dataset:
    """The positions of ``book`` whose contract SPAN margins (``scope``: bool per contract)."""
    keep = scope[book["contract_index"].values]
    return book if keep.all() else book.isel(position=np.flatnonzero(keep))


def _net_positions(
    pos_a: np.ndarray, pos_k: np.ndarray, qty: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One net position per (account, contract): SPAN margins an account's net quantity of each
    contract, so rows ``-1, -5, +6`` of one contract are a flat position (no loss in any scenario,
    no short option), not three positions whose losses cancel only up to rounding.

    A book without repeated (account, contract) rows is returned as it is (same arrays, same
    order); otherwise the net rows are in (account, contract) order, a net of zero kept (its pair
    is still held).
    """
    if pos_a.size < 2:
        return pos_a, pos_k, qty
    account, contract, net, _ = SP.net_positions(pos_a, pos_k, qty, int(pos_k.max()) + 1)
    if net.size == pos_a.size:
        return pos_a, pos_k, qty
    return account.astype(pos_a.dtype, copy=False), contract.astype(pos_k.dtype, copy=False), net


def _margin_book(
    plan: _Plan, book: xr.Dataset, eng: str, scan_loss: bool, *, distinct: bool = False
) -> _BookMargin:
    """SPAN of every account of ``book`` (positions in the plan's scope) on ``plan``.

    ``eng`` is a resolved engine (``"numba"`` or ``"numpy"``); ``scan_loss`` keeps the loss of every
    pair per scenario; ``distinct``: the caller knows the book has one row per (account, contract)
    (no netting to do: :func:`_net_positions` would return it as it is).
    """
    n_a, n_c, n_g = book.sizes["account"], plan.n_cc, plan.n_g
    book_k = plan.local[book["contract_index"].values]
    book_a = book["account_index"].values
    qty = np.asarray(book["quantity"].values, dtype=float)
    pos_a, pos_k, qty = (book_a, book_k, qty) if distinct else _net_positions(book_a, book_k, qty)
    pairs = SP.pairs_of(pos_a, plan.cc_of_k[pos_k], n_a, n_c)  # the (account, CC) pairs held
    n_p = pairs.size

    # -- one pass over the positions: scanning risk, active scenario, price risk per pair; deltas by
    # month (the ledger: one row per pair and month of its CC); option counts for the SOM ----------
    row0 = np.concatenate([[0], np.cumsum(plan.n_months[pairs.cc])])  # rows of pair p: row0[p]:row0[p+1]
    loss, scan_risk, active, prisk, ledger, counts = SP.book_pass(
        pairs,
        pos_a,
        pos_k,
        qty,
        plan.risk_array,
        plan.scenario_pair,
        plan.time_scenarios,
        row0,
        plan.month_idx,
        plan.delta,
        plan.is_call,
        plan.is_put,
        eng,
        keep_loss=scan_loss,
    )
    net_delta = np.add.reduceat(ledger, row0[:-1], axis=0) if n_p else np.zeros((0, n_g))  # (P, G)
    wfpr = None
    if plan.inter is not None or plan.super_ is not None:
        wfpr = _wfpr(plan, pairs, prisk, net_delta)

    # -- super inter-commodity spreads (on the months, before the intra spreads) ---------------------
    super_credit = None
    if plan.super_ is not None:
        assert wfpr is not None
        super_credit, ledger = SP.super_credit(ledger, row0, pairs, plan.super_, wfpr)

    # -- intra-commodity spreads and spot charge; inter-commodity credit ----------------------------
    if plan.intra is not None:
        intra, spot, net_left = SP.intra_and_spot(ledger, row0, pairs, plan.intra, eng)
    else:
        intra, spot = np.zeros((n_p, n_g)), np.zeros((n_p, n_g))
        net_left = net_delta if super_credit is None else np.add.reduceat(ledger, row0[:-1], axis=0)
    credit = np.zeros((n_p, n_g))
    if plan.inter is not None:
        assert wfpr is not None
        credit = SP.inter_credit(net_left, wfpr, pairs, plan.inter, eng)

    # -- short option minimum --------------------------------------------------------------------------
    som = K.short_option_minimum(
        counts[:, 0],
        counts[:, 1],
        counts[:, 2],
        counts[:, 3],
        plan.som_rate[pairs.cc],
        plan.som_net[pairs.cc],
    )[:, None]  # (P, 1)

    # -- combined commodity risk, in its currency, then in the reporting currency ------------------
    before_som = scan_risk + intra + spot - credit
    if super_credit is not None:
        before_som = before_som - super_credit
    risk_cc = np.maximum(before_som, som)
    fx = plan.fx[pairs.cc][:, None]
    nov = SP.segment_sum(pos_a, pos_k, qty, plan.nov, n_a, eng)  # (A, G), premium-style options
    every_pair = np.arange(n_p)
    ones = np.ones(n_p)
    span_risk = SP.segment_sum(pairs.account, every_pair, ones, risk_cc * fx, n_a, eng)  # (A, G)
    # the CC risk is the requirement of the rate class of the risk arrays (maintenance, or initial
    # per the file's isM): the other one is scaled by the initial / maintenance ratio
    ratio = plan.ratio[pairs.cc][:, None]
    initial_class = plan.initial_class[pairs.cc][:, None]
    maintenance_risk = (
        SP.segment_sum(pairs.account, every_pair, ones, risk_cc * np.where(initial_class, 1.0 / ratio, 1.0) * fx, n_a, eng)
        if initial_class.any()
        else span_risk
    )
    initial_risk = SP.segment_sum(
        pairs.account, every_pair, ones, risk_cc * np.where(initial_class, 1.0, ratio) * fx, n_a, eng
    )
    maintenance = np.maximum(maintenance_risk - nov, 0.0)
    initial = np.maximum(initial_risk - nov, 0.0)
    exposure = None
    if plan.exposure is not None:  # per (account, contract) net position: |net| x its long or short exposure
        exposure = SP.exposure_margin(pos_a, pos_k, qty, plan.exposure, n_a)[:, None]  # (A, 1)
        maintenance = maintenance + exposure
        initial = initial + exposure
    return _BookMargin(
        pairs=pairs,
        pos_a=book_a,
        pos_k=book_k,
        fx=fx,
        scan_risk=scan_risk,
        active=active,
        intra=intra,
        spot=spot,
        credit=credit,
        som=som,
        risk_cc=risk_cc,
        loss=loss if scan_loss else None,
        nov=nov,
        span_risk=span_risk,
        maintenance=maintenance,
        initial=initial,
        super_credit=super_credit,
        exposure=exposure,
        netted=pos_a is not book_a,
    )


def _wfpr(plan: _Plan, pairs: SP.Pairs, prisk: np.ndarray, net_delta: np.ndarray) -> np.ndarray:
    """Weighted futures price risk per pair [CC currency per delta], by each CC's method: price risk
    / |net delta| (normal), the CC's price scan range per delta (scan range), or the smaller of the
    two (scan range cap)."""
    wfpr = K.weighted_futures_price_risk(prisk, net_delta)
    if plan.wfpr_mode.any():
        mode = plan.wfpr_mode[pairs.cc][:, None]
        scan = plan.wfpr_scan[pairs.cc][:, None]
        wfpr = np.where(mode == 1, scan, np.where(mode == 2, np.minimum(wfpr, scan), wfpr))
    return wfpr
