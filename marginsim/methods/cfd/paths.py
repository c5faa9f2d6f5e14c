"""Path simulation of CFD accounts along the grid (``spec/cfd.md`` sections 4-6).

The steps of ``grid.path`` / ``grid.monte_carlo`` get times (``cfd.step_times``, else a step
every ``cfd.step_days``, else the Monte Carlo step); along them the kernel
(:func:`marginsim.kernels.cfd.simulate`) charges overnight financing, checks new orders against
the available cash, closes out the most recent positions when equity falls below maintenance,
and writes off negative balances of retail clients. Every other grid dim (``path``, ``shift``...)
is a batch axis of the kernel.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ...errors import InputError
from ...kernels import cfd as K
from ...params.cfd import CfdParams
from ...scenario import ScenarioFile
from .orders import days_since_epoch
from .positions import Slots

__all__ = ["step_times", "year_fractions", "PriceBlock", "price_block", "simulate_paths", "account_variables"]


def step_times(params: CfdParams, sc: ScenarioFile, n_steps: int) -> np.ndarray:
    """Time of every step [days since 1970-01-01].

    ``cfd.step_times`` when given (one per step), else from the morning after ``as_of`` (a date;
    a datetime: from that time) every ``cfd.step_days`` (default: the Monte Carlo step, else 0).

    Raises
    ------
    InputError
        ``cfd.step_times`` does not have one time per step.
    """
    if params.step_times is not None:
        if len(params.step_times) != n_steps:
            raise InputError(
                f"cfd.step_times has {len(params.step_times)} times; the path has {n_steps} steps",
                file=sc.file,
                key_path="cfd.step_times",
            )
        return np.array([days_since_epoch(t) for t in params.step_times])
    mc = sc.grid.monte_carlo if sc.grid is not None else None
    step_days = params.step_days if params.step_days is not None else (mc.step_days if mc else 0.0)
    t0 = days_since_epoch(sc.as_of) if isinstance(sc.as_of, dt.datetime) else days_since_epoch(sc.as_of) + 1.0
    return t0 + step_days * np.arange(n_steps)


def year_fractions(times: np.ndarray, day_count: float) -> np.ndarray:
    """Financing year fraction charged on arrival at each step: nights since the last step / day count."""
    nights = np.concatenate([[0.0], np.diff(np.floor(times + 1e-9))])
    return nights * (1.0 / day_count)


@dataclass(frozen=True)
class PriceBlock:
    """The market's prices laid out for the kernel.

    Attributes
    ----------
    price
        ``(B, S, U)`` prices [price units]: batch (grid dims but ``step``), step, underlying.
    batch_dims
        The grid dims of the batch axis, in order.
    batch_shape
        Their sizes.
    has_step
        Whether the grid has a ``step`` dim.
    n_steps
        Its length (1 without one).
    """

    price: np.ndarray
    batch_dims: list[str]
    batch_shape: tuple[int, ...]
    has_step: bool
    n_steps: int

    @property
    def n_batch(self) -> int:
        """Number of batch points (grid points but along ``step``)."""
        return int(np.prod(self.batch_shape)) if self.batch_shape else 1

    @property
    def step_dims(self) -> list[str]:
        """``["step"]`` with a step dim, else ``[]``."""
        return ["step"] if self.has_step else []


def price_block(price: xr.DataArray, grid_dims: list[str]) -> PriceBlock:
    """Lay out ``price`` (``underlying`` and grid dims) as ``(B, S, U)`` for the kernel."""
    bd = [d for d in grid_dims if d in price.dims and d != "step"]
    has_step = "step" in price.dims
    n_s = price.sizes["step"] if has_step else 1
    bshape = tuple(price.sizes[d] for d in bd)
    n_b = int(np.prod(bshape)) if bshape else 1
    px = price.transpose(*bd, *(["step"] if has_step else []), "underlying").values
    return PriceBlock(px.reshape(n_b, n_s, price.sizes["underlying"]), bd, bshape, has_step, n_s)


def simulate_paths(
    prices: PriceBlock,
    slots: Slots,
    *,
    underlying: np.ndarray,
    quantity: np.ndarray,
    open_price: np.ndarray,
    value_factor: np.ndarray,
    initial_rate: np.ndarray,
    maintenance_rate: np.ndarray,
    financing_rate: np.ndarray,
    open_step: np.ndarray,
    new_order: np.ndarray,
    cash: np.ndarray,
    retail: np.ndarray,
    year_fraction: np.ndarray,
    engine: K.Engine = "auto",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Run the path kernel on the positions (one value per position, laid out in ``slots``).

    Returns
    -------
    (account, slot, close_step, rejected)
        The kernel's outputs (:func:`marginsim.kernels.cfd.simulate`): ``(B, S, A, V)`` per
        account (:data:`~marginsim.kernels.cfd.ACCOUNT_VARS`), ``(B, A, K, 4)`` per slot (open
        price, initial, maintenance, realised), ``(B, A, K)`` close step and rejection.
    """
    n_s = prices.n_steps
    return K.simulate(
        prices.price,
        slots.put(underlying, -1, np.int64),
        slots.put(quantity, 0.0),
        slots.put(open_price, np.nan),
        slots.put(value_factor, 0.0),
        slots.put(initial_rate, 0.0),
        slots.put(maintenance_rate, 0.0),
        slots.put(financing_rate, 0.0),
        slots.put(open_step, n_s, np.int64),
        slots.put(new_order, False, bool),
        cash,
        retail,
        year_fraction,
        engine=engine,
    )


def account_variables(
    acct_out: np.ndarray, prices: PriceBlock
) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """The kernel's per-account output as result variables over ``account``, the batch dims and ``step``."""
    n_a = acct_out.shape[2]
    dims = ("account", *prices.batch_dims, *prices.step_dims)
    out: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    for j, name in enumerate(K.ACCOUNT_VARS):
        arr = np.moveaxis(acct_out[..., j], -1, 0).reshape((n_a, *prices.batch_shape, prices.n_steps))
        if not prices.has_step:
            arr = arr[..., 0]
        if name == "deficiency":
            arr = arr > 0.5
        elif name in ("open_positions", "closed_positions"):
            arr = arr.astype(np.int64)
        out[name] = (dims, arr)
    return out
