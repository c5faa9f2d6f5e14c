"""The positions of the method: its contracts, class groups, and the (account, class group) sums.

Positions are summed into (account, class group) rows with a sparse membership matrix, so
accounts and grid dims are array axes: nothing loops over positions or accounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from ...kernels.grouping import membership
from ...model import Inputs
from ...params.portfolio_margin import PortfolioMarginParams
from .groups import ClassGroups, class_groups, pm_contract_mask

if TYPE_CHECKING:  # a field's type only: scipy.sparse is imported when a membership is built
    import scipy.sparse as sp

__all__ = ["Grid", "PmBook", "pm_book", "grid_of"]


@dataclass
class Grid:
    """The what-if grid dims of a run.

    Attributes
    ----------
    dims
        Grid dim names, in the inputs' order.
    shape
        Size of each grid dim.
    size
        Number of grid points (1 without grid dims).
    coords
        Coordinate values of each grid dim.
    """

    dims: list[str]
    shape: tuple[int, ...]
    size: int
    coords: dict[str, np.ndarray]


@dataclass
class PmBook:
    """The book as the method sees it (``K`` held contracts, ``C`` class groups, ``A`` accounts).

    Attributes
    ----------
    contracts
        The method's contracts held by the whole book (the same class groups in every chunk).
    group_of_k
        Class group of each contract, shape ``(K,)``.
    groups
        The class groups.
    n_accounts
        ``A``.
    pos_account, pos_contract, quantity
        Account, contract (index into ``contracts``) and quantity of each of the method's
        positions.
    member
        Sparse ``(A * C, K)`` matrix of quantities: row ``a * C + c``.
    held
        Whether the account holds a position in the class group, shape ``(A, C)``.
    grid
        The grid dims.
    """

    contracts: xr.Dataset
    group_of_k: np.ndarray
    groups: ClassGroups
    n_accounts: int
    pos_account: np.ndarray
    pos_contract: np.ndarray
    quantity: np.ndarray
    member: sp.csr_matrix
    held: np.ndarray
    grid: Grid

    @property
    def n_groups(self) -> int:
        """``C``."""
        return len(self.groups.names)

    @property
    def n_contracts(self) -> int:
        """``K``."""
        return int(self.contracts.sizes["contract"])


def grid_of(inputs: Inputs) -> Grid:
    """The grid dims of ``inputs`` with their sizes and coordinates."""
    gd = list(inputs.grid_dims)
    sizes = {d: int(inputs.market.sizes.get(d) or inputs.grid.sizes[d]) for d in gd}
    shape = tuple(sizes[d] for d in gd)
    coords = {}
    for d in gd:
        for ds in (inputs.market, inputs.grid):
            if d in ds.coords:
                coords[d] = ds[d].values
                break
        else:
            coords[d] = np.arange(sizes[d])
    return Grid(gd, shape, int(np.prod(shape)) if shape else 1, coords)


def pm_book(inputs: Inputs, params: PortfolioMarginParams) -> PmBook:
    """The method's positions of ``inputs.book``, their class groups and membership matrix."""
    book = inputs.book
    allc = inputs.contracts
    in_pm = pm_contract_mask(allc)
    pos_sel = np.flatnonzero(in_pm[book["contract_index"].values])
    # held by the whole book (inputs.universe, for a chunk of accounts): the same class groups in every chunk
    held_k = np.intersect1d(inputs.held_contracts(), np.flatnonzero(in_pm))
    contracts = allc.isel(contract=held_k)
    n_k = len(held_k)
    local = np.full(allc.sizes["contract"], -1, dtype=np.int64)
    local[held_k] = np.arange(n_k)
    und_of_k = contracts["underlying_index"].values
    und_groups = np.unique(und_of_k)
    group_of_k = np.searchsorted(und_groups, und_of_k)
    groups = class_groups(inputs, und_groups, params)
    n_c = len(groups.names)
    n_a = book.sizes["account"]
    pos_k = local[book["contract_index"].values[pos_sel]]
    pos_a = book["account_index"].values[pos_sel]
    qty = book["quantity"].values[pos_sel]
    rows = pos_a * n_c + group_of_k[pos_k]
    member = membership(rows, pos_k, qty, n_a * n_c, n_k)
    held = np.bincount(rows, minlength=n_a * n_c).reshape(n_a, n_c) > 0
    return PmBook(contracts, group_of_k, groups, n_a, pos_a, pos_k, qty, member, held, grid_of(inputs))
