"""The components of the requirement, per (account, class group), from the stress pnl.

- the theoretical-value scan, the option minimum (per option contract) and the extreme scan;
- the concentration stress over the whole account (riskiest class groups at the hard stress);
- the single-name methods (small cap, China concept, default, Hong Kong property);
- the add-ons: the large-position charge and the days-to-liquidate charge (initial only).

Arrays: ``A`` accounts, ``C`` class groups, ``G`` grid points (flattened), ``M`` single-name
methods; amounts in the reporting currency, losses positive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...kernels import portfolio_margin as K
from ...kernels.grouping import apply_to_entries
from ...params.portfolio_margin import PortfolioMarginParams
from ...scenario import ScenarioFile
from .book import PmBook
from .groups import SINGLE_NAME_METHODS
from .stresses import VOL_POINTS, Stresses

__all__ = ["Scan", "Concentration", "SingleName", "AddOns", "scan", "concentration", "single_name", "add_ons"]


@dataclass
class Scan:
    """The scan, option minimum and extreme scan of each (account, class group).

    Attributes
    ----------
    loss
        Loss per scan point, shape ``(A, C, P, V, G)``.
    group_scan, group_extreme, group_base
        Shape ``(A, C, G)``; base = max(scan, minimum).
    group_minimum
        Option minimum, shape ``(A, C)``.
    option_contracts
        Option contracts held (sum of |quantity|), shape ``(A, C)``.
    """

    loss: np.ndarray
    group_scan: np.ndarray
    group_extreme: np.ndarray
    group_minimum: np.ndarray
    group_base: np.ndarray
    option_contracts: np.ndarray


def scan(
    pnl: np.ndarray, st: Stresses, book: PmBook, params: PortfolioMarginParams, sc: ScenarioFile
) -> Scan:
    """Scan, option minimum (``option_minimum`` USD x multiplier per option contract) and extreme scan."""
    n_a, n_c, n_g = book.n_accounts, book.n_groups, book.grid.size
    n_p = 2 * params.points_per_side
    n_v = len(VOL_POINTS)
    block = pnl[:, :, st.blocks["scan"]]
    loss = -block.reshape(n_a, n_c, n_p, n_v, n_g) + 0.0
    group_scan = K.worst_loss(block, axis=2)  # (A, C, G)
    group_extreme = params.extreme.cover_fraction * K.worst_loss(pnl[:, :, st.blocks["extreme"]], axis=2)
    is_opt = book.contracts["is_option"].values
    mult = book.contracts["multiplier"].values
    R = book.member
    opt_contracts = np.asarray(apply_to_entries(R, lambda v, k: np.abs(v) * is_opt[k]).sum(axis=1)).reshape(
        n_a, n_c
    )
    opt_units = np.asarray(
        apply_to_entries(R, lambda v, k: np.abs(v) * mult[k] * is_opt[k]).sum(axis=1)
    ).reshape(n_a, n_c)
    usd_min = sc.fx_rate("USD", key_path="portfolio_margin.option_minimum") if opt_units.any() else 1.0
    group_minimum = params.option_minimum * usd_min * opt_units  # (A, C)
    group_base = np.maximum(group_scan, group_minimum[..., None])
    return Scan(loss, group_scan, group_extreme, group_minimum, group_base, opt_contracts)


@dataclass
class Concentration:
    """The concentration stress of each account.

    Attributes
    ----------
    total
        The account's concentration component, shape ``(A, G)``.
    loss_top, loss_rest
        Loss of each class group at the hard and the mild stress, shape ``(A, C, G)``.
    contribution
        Each class group's part of ``total``, shape ``(A, G, C)``.
    is_top
        Whether the class group is among the riskiest, shape ``(A, G, C)``.
    drivers
        Names of the riskiest class groups with a loss, ``""`` for none, shape ``(A, G, top_n)``.
    """

    total: np.ndarray
    loss_top: np.ndarray
    loss_rest: np.ndarray
    contribution: np.ndarray
    is_top: np.ndarray
    drivers: np.ndarray


def concentration(
    pnl: np.ndarray, st: Stresses, book: PmBook, params: PortfolioMarginParams
) -> Concentration:
    """The ``top_n`` riskiest class groups of the eligible product classes at the hard stress, the
    others at the mild stress."""
    n_a, n_c, n_g = book.n_accounts, book.n_groups, book.grid.size
    conc = pnl[:, :, st.blocks["concentration"]]
    conc_top = K.worst_loss(conc[:, :, 0:2], axis=2)
    conc_rest = K.worst_loss(conc[:, :, 2:4], axis=2)
    top_n = params.concentration.top_n
    in_conc = book.held & np.isin(book.groups.product_class, params.concentration.product_classes)[None, :]
    total, contrib, is_top = K.top_n_concentration(
        np.moveaxis(conc_top, 1, -1), np.moveaxis(conc_rest, 1, -1), in_conc[:, None, :], top_n
    )  # (A, G), (A, G, C), (A, G, C)
    key = np.where(is_top & (np.moveaxis(conc_top, 1, -1) > 0), np.moveaxis(conc_top, 1, -1), -np.inf)
    order = np.argsort(-key, axis=-1, kind="stable")[..., :top_n]  # (A, G, min(top_n, C))
    valid = np.take_along_axis(key, order, axis=-1) > -np.inf
    names = np.array([*book.groups.names, ""], dtype=object)  # "" = no driver
    drivers = np.full((n_a, n_g, top_n), "", dtype=object)
    drivers[..., : order.shape[-1]] = names[np.where(valid, order, n_c)]
    return Concentration(total, conc_top, conc_rest, contrib, is_top, drivers)


@dataclass
class SingleName:
    """The single-name methods.

    Attributes
    ----------
    loss
        Loss of each method, NaN where it does not apply, shape ``(A, C, M, G)``.
    group_loss
        Largest applicable loss of each class group, shape ``(A, C, G)``.
    total
        The account's single-name component: its largest ``group_loss`` of a stock, shape ``(A, G)``.
    driver_index
        The class group setting ``total`` (-1: none), shape ``(A, G)``.
    driver
        Its name (``""``: none), shape ``(A, G)``.
    """

    loss: np.ndarray
    group_loss: np.ndarray
    total: np.ndarray
    driver_index: np.ndarray
    driver: np.ndarray


def single_name(pnl: np.ndarray, st: Stresses, book: PmBook) -> SingleName:
    """The largest single-name stress loss of one stock with its derivatives."""
    n_a, n_c, n_g = book.n_accounts, book.n_groups, book.grid.size
    n_m = len(SINGLE_NAME_METHODS)
    sn_pnl = pnl[:, :, st.blocks["single_name"]].reshape(n_a, n_c, n_m, 2, n_g)
    sn_loss = K.worst_loss(sn_pnl, axis=3)  # (A, C, M, G)
    app = book.groups.sn_applies[None, :, :, None]
    group_sn = np.max(np.where(app, sn_loss, 0.0), axis=2)  # (A, C, G)
    eligible = book.held & book.groups.is_stock[None, :]
    total, idx = K.largest_group(np.moveaxis(group_sn, 1, -1), eligible[:, None, :])  # (A, G)
    names = np.array([*book.groups.names, ""], dtype=object)
    driver = names[np.where(idx >= 0, idx, n_c)].astype(str)
    return SingleName(np.where(app, sn_loss, np.nan), group_sn, total, idx, driver)


@dataclass
class AddOns:
    """The large-position and days-to-liquidate charges.

    Attributes
    ----------
    shares_outstanding_fraction
        |delta shares| / shares outstanding, shape ``(A, C, G)``.
    adv_multiple
        |delta shares| / average daily volume [days], shape ``(A, C, G)``.
    large_position
        Large-position charge, shape ``(A, C, G)``.
    days_to_liquidate
        Days-to-liquidate charge, shape ``(A, C, G)``.
    """

    shares_outstanding_fraction: np.ndarray
    adv_multiple: np.ndarray
    large_position: np.ndarray
    days_to_liquidate: np.ndarray


def add_ons(
    pnl: np.ndarray,
    st: Stresses,
    book: PmBook,
    params: PortfolioMarginParams,
    delta_shares: np.ndarray,
    group_base: np.ndarray,
) -> AddOns:
    """Large-position charge (class groups at or above the share threshold) and days-to-liquidate
    charge (a factor of the base for positions large against average daily volume)."""
    groups, held = book.groups, book.held
    with np.errstate(divide="ignore", invalid="ignore"):
        so_frac = np.abs(delta_shares) / groups.shares_outstanding[None, :, None]
        adv_mult = np.abs(delta_shares) / groups.adv[None, :, None]
    lp = params.large_position
    lp_on = held[..., None] & (np.nan_to_num(so_frac, nan=0.0) >= lp.threshold)
    lp_charge = np.where(lp_on, K.worst_loss(pnl[:, :, st.blocks["large_position"]], axis=2), 0.0)
    dp = params.days_to_liquidate
    dtl_charge = K.liquidity_factor(adv_mult, dp.threshold, dp.scaling, dp.cap) * group_base
    dtl_charge = np.where(held[..., None], dtl_charge, 0.0)
    return AddOns(so_frac, adv_mult, lp_charge, dtl_charge)
