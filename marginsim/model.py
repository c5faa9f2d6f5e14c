"""The data model: a scenario file becomes xarray Datasets.

- **Book**: dim ``position`` (one row of the portfolio: contract x account).
- **Contracts**: dim ``contract`` (instrument definitions, pricing model codes, given risk arrays).
- **Market**: dim ``underlying`` plus the what-if grid dims (``shift``, ``vol_shift``, ``step``...).
- **Grid**: a coordinates-only Dataset of the grid dims that are method parameters rather than
  market moves (``price_scan_scale``, ``vol_scan_scale``).

Every method consumes an :class:`Inputs` bundle of these; nothing here computes margin.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .errors import InputError
from .kernels import pricing
from .kernels.cfd import gbm_paths
from .params.span import SpanParams
from .scenario import ScenarioFile

__all__ = [
    "Inputs",
    "inputs_from_scenario",
    "is_dask",
    "contracts_from_arrays",
    "build_market",
    "build_grid",
    "book_from_arrays",
    "contract_indices",
    "flat_grid",
    "GRID_DIMS",
    "with_dates",
    "DAYS_PER_YEAR",
    "Universe",
    "as_names",
]

#: Day count of times inside kernels (ACT/365).
DAYS_PER_YEAR = 365.0

#: The grid dims, in the order results list them. ``date``: the market of each day of a history
#: (:func:`with_dates`, the backtest): prices, vols and times to expiry per date.
GRID_DIMS = ("shift", "vol_shift", "price_scan_scale", "vol_scan_scale", "step", "path", "date")

_MODEL_OF_TYPE = {"future": pricing.LINEAR, "stock": pricing.LINEAR, "cfd": pricing.LINEAR}


@dataclass(frozen=True)
class Universe:
    """The whole book, as seen by a method that runs on one chunk of its accounts.

    A method's non-account coords (SPAN's ``contract`` and ``group``, the class groups of portfolio
    margin) come from the contracts the book holds. When a method runs on a chunk of accounts
    (:mod:`marginsim.scale`), those coords must be the whole book's, so that every chunk's result
    has the same coords and the chunks concatenate along ``account`` into the whole book's result.

    Attributes
    ----------
    contract_index
        Sorted indices into :attr:`Inputs.contracts` of the contracts held anywhere in the book.
    accounts
        Names of every account of the whole book.
    extra_accounts
        Whether this chunk carries the accounts a method adds that hold no position (CFD: the
        funded accounts of ``cfd.accounts`` without positions). True for exactly one chunk.
    """

    contract_index: np.ndarray
    accounts: frozenset[str] = frozenset()
    extra_accounts: bool = True


def is_dask(ds: xr.Dataset) -> bool:
    """Whether any variable of ``ds`` is a dask (chunked) array."""
    return any(v.chunks is not None for v in ds.variables.values())


@dataclass
class Inputs:
    """Everything a method needs, as xarray Datasets.

    Attributes
    ----------
    scenario
        The validated scenario file.
    book
        Dataset over ``position``: ``contract`` (name), ``contract_index``, ``quantity``,
        ``account`` (name), ``account_index``.
    contracts
        Dataset over ``contract`` (see :func:`inputs_from_scenario`).
    market
        Dataset over ``underlying`` and the market grid dims: ``price``, ``vol``, ``rate``,
        ``dividend_yield``, ``currency``, ``fx``.
    grid
        Coordinates of the parameter grid dims (``price_scan_scale``, ``vol_scan_scale``).
    span_params
        SPAN parameters when they come from a clearing-house file (merged with the scenario's).
    span_file
        The parsed clearing-house file, if any.
    universe
        The whole book, when :attr:`book` is one chunk of its accounts (see :class:`Universe`);
        ``None``: the book is whole.
    normalise_contract_id
        Spelling normaliser of contract names, applied to the names of a book that do not match
        as given (:meth:`with_book`, stored books); set by the reader of a clearing-house file
        (:func:`marginsim.io.span.canonical_id`: any spelling of a strike); ``None``: names must
        match exactly.
    history
        The scenario's ``history:`` (:func:`marginsim.io.history.read_history`): Dataset over
        ``date`` and ``underlying`` with ``close`` [price units] and, with ``vol_columns``,
        ``vol`` [decimal]; the market's underlyings that have a column. Loaded by
        :func:`marginsim.api.build_inputs`; ``None`` without ``history:``.
    derived
        What methods derive from the definitions once and reuse across books (SPAN's plan of a
        clearing-house file). Shared by :meth:`with_book` and other copies; each entry checks
        that the definitions it came from are unchanged before it is used. Not pickled.
    """

    scenario: ScenarioFile
    book: xr.Dataset
    contracts: xr.Dataset
    market: xr.Dataset
    grid: xr.Dataset = field(default_factory=xr.Dataset)
    span_params: SpanParams | None = None
    span_file: Any = None
    universe: Universe | None = None
    normalise_contract_id: Callable[[str], str] | None = None
    history: xr.Dataset | None = None
    derived: dict = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["derived"] = {}  # rebuilt where needed (a worker's copy must not carry caches)
        return state

    @property
    def is_lazy(self) -> bool:
        """Whether the book or the market is backed by dask arrays (a chunked run: see
        :mod:`marginsim.scale`; :func:`marginsim.margin` runs methods on it chunk by chunk)."""
        return is_dask(self.book) or is_dask(self.market)

    def require_in_memory(self, function: str) -> None:
        """Raise for lazy inputs: a method function runs on in-memory inputs only."""
        if self.is_lazy:
            raise InputError(
                f"{function}() runs on in-memory inputs; margin a chunked or stored book with "
                "marginsim.margin(inputs, methods=[...]), which runs each method chunk by chunk",
                file=self.scenario.file,
            )

    @property
    def grid_dims(self) -> tuple[str, ...]:
        """The what-if dims present, in result order."""
        present = set(self.market.dims) | set(self.grid.dims)
        return tuple(d for d in GRID_DIMS if d in present)

    def with_book(self, contract, quantity, account=None) -> Inputs:
        """The same contracts and market with another book (many portfolios against one file).

        Parameters
        ----------
        contract
            Contract names (or integer indices into :attr:`contracts`), one per position.
        quantity
            Signed quantities [contracts], long positive.
        account
            Account (portfolio) names, one per position (default ``"main"``).
        """
        contract = np.asarray(contract)
        if contract.dtype.kind not in "iu":
            contract = contract_indices(
                self.contracts, contract, normalise=self.normalise_contract_id, file=self.scenario.file
            )
        book = book_from_arrays(self.contracts, contract=contract, quantity=quantity, account=account)
        return replace(self, book=book, universe=None)

    def held_contracts(self) -> np.ndarray:
        """Sorted indices into :attr:`contracts` of the contracts held: by the whole book when
        :attr:`universe` is set (a chunk of a larger book), else by :attr:`book`."""
        if self.universe is not None:
            return self.universe.contract_index
        n = self.contracts.sizes["contract"]
        return np.flatnonzero(np.bincount(self.book["contract_index"].values, minlength=n))

    def book_accounts(self) -> frozenset[str]:
        """Names of the accounts of the whole book (:attr:`universe`), else of :attr:`book`."""
        if self.universe is not None:
            return self.universe.accounts
        return frozenset(self.accounts)

    @property
    def accounts(self) -> list[str]:
        return as_names(self.book["account_name"].values).tolist()

    def _per_contract(self, name: str, contracts: xr.Dataset) -> xr.DataArray:
        """A market variable looked up for each contract's underlying (dims ``contract`` + grid dims)."""
        return self.market[name].drop_vars("underlying").isel(underlying=contracts["underlying_index"])

    def underlying_level(self, contracts: xr.Dataset | None = None) -> xr.DataArray:
        """Price level each contract moves with [price units], over ``contract`` and market grid dims.

        Futures with a given settlement price move proportionally with their underlying; every
        other contract takes the underlying's market price (for an option on a future, the
        underlying entry is the futures price).

        Parameters
        ----------
        contracts
            A subset of :attr:`contracts` (default: all).
        """
        c = self.contracts if contracts is None else contracts
        mkt_price = self._per_contract("price", c)
        base = self._per_contract("base_price", c)
        given = c["price"]
        priced = given.notnull()
        at = np.flatnonzero(priced.values)  # the type compared only where a price is given
        fut = np.zeros(priced.shape, dtype=bool)
        fut[at] = c["type"].values[at] == "future"
        level = xr.where(priced.copy(deep=False, data=fut), given * mkt_price / base, mkt_price)
        level.attrs.update(units="price units", description="price level the contract moves with")
        return level

    def contract_vol(self, contracts: xr.Dataset | None = None) -> xr.DataArray:
        """Implied vol per contract [decimal], over ``contract`` and market grid dims.

        The contract's own ``vol``; else implied from its given premium; else the underlying's.
        Grid vol shifts (and, over ``date``, the history's vol change: :func:`with_dates`) apply on
        top and are floored at 0.
        """
        c = self.contracts if contracts is None else contracts
        shift = self.market["vol_shift_value"] if "vol_shift_value" in self.market else 0.0
        if "date_vol_shift" in self.market:  # the history's vol change per date (with_dates)
            shift = shift + self._per_contract("date_vol_shift", c)
        vol = (c["base_vol"] + shift).clip(min=0.0)
        vol.attrs.update(units="1/sqrt(year)", description="implied volatility")
        return vol

    def time_to_expiry(self, contracts: xr.Dataset | None = None) -> xr.DataArray:
        """Time to expiry per contract [years, ACT/365], NaN without an expiry.

        The contracts' own ``t`` (from the valuation date); over a ``date`` grid dim
        (:func:`with_dates`) the time from each date, over ``contract`` and ``date``, floored at 0.
        """
        c = self.contracts if contracts is None else contracts
        if "date" not in self.market.dims:
            return c["t"]
        dates = self.market["date"].values.astype("datetime64[D]")
        days = (c["expiry"].values[:, None] - dates[None, :]).astype("timedelta64[D]").astype(float)
        days[np.isnat(c["expiry"].values)] = np.nan
        t = xr.DataArray(
            np.maximum(days, 0.0) / DAYS_PER_YEAR,
            dims=("contract", "date"),
            coords={"contract": c["contract"], "date": self.market["date"]},
        )
        t.attrs.update(units="year", description="time to expiry, ACT/365")
        return t

    def rate(self, contracts: xr.Dataset | None = None) -> xr.DataArray:
        """Interest rate per contract [decimal per year], from its underlying."""
        return self._per_contract("rate", self.contracts if contracts is None else contracts)

    def dividend_yield(self, contracts: xr.Dataset | None = None) -> xr.DataArray:
        """Dividend yield per contract [decimal per year], from its underlying."""
        return self._per_contract("dividend_yield", self.contracts if contracts is None else contracts)

    def revalue(
        self,
        contracts: xr.Dataset,
        level: xr.DataArray,
        vol: xr.DataArray,
        t: xr.DataArray | None = None,
        *,
        engine: pricing.Engine = "auto",
        func=None,
    ) -> xr.DataArray:
        """Model value (or, with ``func=pricing.delta``, delta) of one unit of each contract.

        Parameters
        ----------
        contracts
            The contracts (a subset of :attr:`contracts`).
        level, vol
            Underlying level [price units] and vol [decimal]; any extra dims broadcast.
        t
            Time to expiry [years]; default: :meth:`time_to_expiry` (the contracts' own, or per
            ``date``).
        engine
            Pricing engine.
        func
            :func:`marginsim.kernels.pricing.value` (default) or :func:`~marginsim.kernels.pricing.delta`.

        Returns
        -------
        xarray.DataArray
            [price units per unit of underlying], no multiplier.
        """
        fn = partial(func or pricing.value, engine=engine)
        t = self.time_to_expiry(contracts) if t is None else t
        return xr.apply_ufunc(
            fn,
            contracts["model"],
            level,
            contracts["strike"].fillna(0.0),
            t.fillna(0.0),
            vol,
            self.rate(contracts),
            self.dividend_yield(contracts),
            contracts["is_call"],
            contracts["american"],
            dask="parallelized",
            output_dtypes=[float],
        )

    def option_premium(
        self,
        contracts: xr.Dataset | None = None,
        *,
        engine: pricing.Engine = "auto",
        level: xr.DataArray | None = None,
        vol: xr.DataArray | None = None,
        model_now: xr.DataArray | None = None,
    ) -> xr.DataArray:
        """Option premium per unit at the (grid) market [price units]; 0 for non-options.

        A given premium is exact at the base market and moves with the model:
        premium + (model value now - model value at the base market).

        ``level`` and ``vol``, when the caller has them, are :meth:`underlying_level` and
        :meth:`contract_vol` of ``contracts`` (default: computed here); ``model_now``, when the
        caller has it, is ``self.revalue(contracts, level, vol.fillna(0.0))`` (the same numbers).

        Raises
        ------
        InputError
            For a premium-style option with neither a premium nor a vol.
        """
        c = self.contracts if contracts is None else contracts
        is_opt = c["is_option"]
        can_price = c["base_vol"].notnull()
        opt, price = is_opt.values, c["price"].values
        unpriced = opt & c["premium_style"].values & np.isnan(price) & ~can_price.values
        if unpriced.any():
            name = str(c["contract"].values[int(np.flatnonzero(unpriced)[0])])
            raise InputError(
                "a premium-style option needs a price (premium) or a vol for its net option value",
                file=self.scenario.file,
                key_path=("contracts", name, "price"),
            )
        given = c["price"]
        market_moves = any(d in self.market.dims for d in ("shift", "step", "path", "vol_shift", "date"))
        if not market_moves and not (opt & np.isnan(price)).any():
            # no grid move and every option has its premium: the premiums are the answer
            return given.copy(data=np.where(opt, price, 0.0)).assign_attrs(
                units="price units", description="option premium per unit of underlying"
            )
        level = self.underlying_level(c) if level is None else level
        vol = self.contract_vol(c) if vol is None else vol
        if model_now is None:
            model_now = self.revalue(c, level, vol.fillna(0.0), engine=engine)
        if not (opt & ~np.isnan(price)).any():
            # no option has a given premium: the model's value (the value at the base market
            # would only correct given premiums; attrs merged as below)
            prem = xr.where(given.notnull(), given + model_now, model_now).where(is_opt, 0.0)
            prem.attrs.update(units="price units", description="option premium per unit of underlying")
            return prem
        base_level = self._per_contract("base_price", c)
        # at the base market and the valuation date (the premium's), also over a date dim
        model_base = self.revalue(c, base_level, c["base_vol"].fillna(0.0), c["t"], engine=engine)
        prem = xr.where(given.notnull(), given + (model_now - model_base).where(can_price, 0.0), model_now)
        prem = prem.where(is_opt, 0.0)
        prem.attrs.update(units="price units", description="option premium per unit of underlying")
        return prem


def inputs_from_scenario(sc: ScenarioFile) -> Inputs:
    """Turn a validated scenario file that defines its own contracts into the xarray data model.

    A scenario whose ``span.source`` names a clearing-house file is built by
    :func:`marginsim.io.span.inputs_from_span_file`; :func:`marginsim.api.build_inputs` chooses.

    Parameters
    ----------
    sc
        A validated scenario file (:func:`marginsim.scenario.load_scenario`) without
        ``span.source``.

    Returns
    -------
    Inputs
        Book, contracts, market and grid Datasets.

    Raises
    ------
    InputError
        For a scenario with ``span.source`` (use :func:`marginsim.api.build_inputs`).
    """
    if sc.span is not None and sc.span.source is not None:
        raise InputError(
            "the scenario's contracts come from the clearing-house file of span.source: build its "
            "inputs with marginsim.build_inputs (marginsim.io.span.inputs_from_span_file), not "
            "marginsim.model.inputs_from_scenario",
            file=sc.file,
            key_path="span.source",
        )

    # -- market and grid -------------------------------------------------------------------
    m = list(sc.market.values())
    market = build_market(
        sc,
        names=list(sc.market),
        price=np.array([u.price for u in m], dtype=float),
        currency=[u.currency or sc.currency for u in m],
        vol=np.array([np.nan if u.vol is None else u.vol for u in m], dtype=float),
        rate=np.array([u.rate for u in m], dtype=float),
        dividend_yield=np.array([u.dividend_yield for u in m], dtype=float),
    )
    grid = build_grid(sc)

    # -- contracts ------------------------------------------------------------------------
    names = list(sc.contracts)
    cs = [sc.contracts[n] for n in names]
    n_points = 16 if sc.span is None or sc.span.scenario_set is None else len(sc.span.scenario_set)
    ra = np.full((len(names), n_points), np.nan)
    for i, c in enumerate(cs):
        if c.risk_array is not None:
            ra[i] = c.risk_array

    def arr(getter, dtype=float, fill=np.nan):
        return np.array([fill if getter(c) is None else getter(c) for c in cs], dtype=dtype)

    contracts = contracts_from_arrays(
        sc,
        market,
        names=names,
        type=[c.type for c in cs],
        underlying=[c.underlying for c in cs],
        multiplier=arr(lambda c: c.multiplier),
        expiry=np.array(
            [np.datetime64(c.expiry, "D") if c.expiry else np.datetime64("NaT") for c in cs],
            dtype="datetime64[D]",
        ),
        strike=arr(lambda c: c.strike),
        price=arr(lambda c: c.price),
        vol=arr(lambda c: c.vol),
        group=[c.group or c.underlying for c in cs],
        option_on=[c.option_on or "" for c in cs],
        american=[c.exercise == "american" for c in cs],
        premium_style=[c.premium_style == "premium" for c in cs],
        risk_array=ra,
        composite_delta=arr(lambda c: c.composite_delta),
    )

    # -- book -----------------------------------------------------------------------------
    table = sc.position_table()
    book = book_from_arrays(
        contracts,
        contract=contract_indices(contracts, table.contract, error=table.error),
        quantity=table.quantity,
        account=table.account,
    )
    return Inputs(scenario=sc, book=book, contracts=contracts, market=market, grid=grid)


def build_market(
    sc: ScenarioFile,
    *,
    names,
    price,
    currency,
    vol=None,
    rate=None,
    dividend_yield=None,
) -> xr.Dataset:
    """The market Dataset (dim ``underlying`` plus the market grid dims of ``sc.grid``).

    Parameters
    ----------
    sc
        The scenario (reporting currency, FX table, grid).
    names, price, currency
        Underlying names, prices [price units] and currencies.
    vol, rate, dividend_yield
        Implied vol [decimal] (NaN: none), rate and dividend yield [decimal per year].
    """
    file = sc.file
    names = [str(n) for n in names]
    n_u = len(names)
    und_index = {n: i for i, n in enumerate(names)}
    ccy = [str(c) for c in currency]
    fx = [sc.fx_rate(c, key_path=f"market.{n}.currency") for c, n in zip(ccy, names)]
    base_price = np.asarray(price, dtype=float).reshape(n_u)

    def col(a, fill):
        return np.full(n_u, fill) if a is None else np.asarray(a, dtype=float).reshape(n_u)

    market = xr.Dataset(
        {
            "base_price": ("underlying", base_price),
            "price": ("underlying", base_price),
            "vol": ("underlying", col(vol, np.nan)),
            "rate": ("underlying", col(rate, 0.0)),
            "dividend_yield": ("underlying", col(dividend_yield, 0.0)),
            "currency": ("underlying", np.array(ccy, dtype=object)),
            "fx": ("underlying", np.array(fx, dtype=float)),
        },
        coords={"underlying": names},
        attrs={"as_of": str(sc.as_of), "currency": sc.currency},
    )
    market["price"].attrs.update(units="price units", description="underlying price")
    market["fx"].attrs.update(
        units=f"{sc.currency} per unit", description="value of one unit of the currency"
    )
    g = sc.grid
    if g is None:
        return market
    if g.shift is not None:
        if isinstance(g.shift, dict):
            n = len(next(iter(g.shift.values())))
            sh = np.zeros((n_u, n))
            for und, vals in g.shift.items():
                sh[und_index[und]] = vals
            coord = np.arange(n)
        else:
            sh = np.broadcast_to(np.asarray(g.shift, dtype=float), (n_u, len(g.shift)))
            coord = np.asarray(g.shift, dtype=float)
        if np.any(sh <= -1):
            raise InputError(
                "a shift of -100 % or less gives a price of zero or below", file=file, key_path="grid.shift"
            )
        shift = xr.DataArray(sh, dims=("underlying", "shift"), coords={"shift": coord})
        market["price"] = market["price"] * (1.0 + shift)
        market["shift_value"] = shift
    if g.path is not None:
        n = len(next(iter(g.path.values())))
        level = np.repeat(base_price[:, None], n, axis=1)
        for und, vals in g.path.items():
            level[und_index[und]] = vals
        # price * level / base (not price * (level / base)): the path's own prices come out exactly
        path = xr.DataArray(level, dims=("underlying", "step"), coords={"step": np.arange(n)})
        market["price"] = market["price"] * path / xr.DataArray(base_price, dims="underlying")
    if g.monte_carlo is not None:
        market["price"] = market["price"] * _monte_carlo_factor(sc, market)
    if g.vol_shift is not None:
        market["vol_shift_value"] = xr.DataArray(
            np.asarray(g.vol_shift, dtype=float), dims="vol_shift", coords={"vol_shift": g.vol_shift}
        )
    return market


def _monte_carlo_factor(sc: ScenarioFile, market: xr.Dataset) -> xr.DataArray:
    """``grid.monte_carlo``: simulated price / start price, dims (underlying, step, path)."""
    grid, file = sc.grid, sc.file
    assert grid is not None and grid.monte_carlo is not None  # the caller checked
    mc = grid.monte_carlo
    if grid.path is not None:
        raise InputError(
            "give grid.path or grid.monte_carlo, not both", file=file, key_path="grid.monte_carlo"
        )
    names = market["underlying"].values.tolist()
    drift = mc.drift if isinstance(mc.drift, dict) else {}
    for key, table in (("vol", mc.vol), ("drift", drift)):
        for und in table:
            if und not in names:
                raise InputError(
                    f"unknown underlying {und!r}", file=file, key_path=("grid", "monte_carlo", key, und)
                )
    vol = np.array([mc.vol.get(n, v) for n, v in zip(names, market["vol"].values)], dtype=float)
    mu = (
        np.array([drift.get(n, 0.0) for n in names])
        if drift
        else np.full(len(names), 0.0 if isinstance(mc.drift, dict) else float(mc.drift or 0.0))
    )
    moves = np.flatnonzero(np.nan_to_num(vol) > 0)  # underlyings without a vol keep their price
    factor = np.ones((len(names), mc.steps + 1, mc.paths))
    try:
        factor[moves] = gbm_paths(
            np.ones(moves.size),
            vol[moves],
            mu[moves],
            paths=mc.paths,
            steps=mc.steps,
            dt=mc.step_days / DAYS_PER_YEAR,
            correlation=mc.correlation,
            seed=mc.seed,
        )
    except ValueError as e:
        raise InputError(str(e), file=file, key_path="grid.monte_carlo.correlation") from None
    coords = {"step": np.arange(mc.steps + 1), "path": np.arange(mc.paths)}
    return xr.DataArray(factor, dims=("underlying", "step", "path"), coords=coords)


def with_dates(inputs: Inputs, close: xr.DataArray, vol_shift: xr.DataArray | None = None) -> Inputs:
    """The inputs with a ``date`` grid dim: the market of each day of a history.

    Every method broadcasts over ``date`` as over the other grid dims; along it the underlyings
    take the history's closes, the contracts' times to expiry run from each date
    (:meth:`Inputs.time_to_expiry`: a method uses it, not the contracts' ``t``) and option vols
    move by ``vol_shift``. A method that reads :attr:`Inputs.history` must, at each date, use
    only the history up to that date (the backtest, :mod:`marginsim.backtesting`, refuses the
    methods that do not yet: ``LOOK_AHEAD_METHODS``).

    Parameters
    ----------
    inputs
        In-memory inputs without a ``date`` dim.
    close
        Closes over ``date`` (datetime64) and ``underlying`` [price units]: an underlying of the
        market without one keeps its price. Prices move as on a ``grid.path``: price x close /
        base price (other grid moves, such as ``grid.shift``, apply on top).
    vol_shift
        Change of implied vol per ``date`` and ``underlying`` [decimal], added to every option's
        vol on that underlying (NaN: none); ``None``: vols as they are.

    Returns
    -------
    Inputs
        A copy whose market has the ``date`` dim (``price`` and, with ``vol_shift``,
        ``date_vol_shift``).
    """
    market = inputs.market
    if "date" in market.dims:
        raise InputError("the inputs have a date dim already", file=inputs.scenario.file)
    names = market["underlying"].values
    close = close.transpose("date", "underlying")
    level = close.reindex(underlying=names).transpose("underlying", "date")
    level = level.fillna(market["base_price"])
    level = level.assign_coords(date=close["date"].values.astype("datetime64[ns]"))
    market = market.copy()
    # price * level / base (as a grid.path): a history's closes come out exactly without other moves
    market["price"] = market["price"] * level / market["base_price"]
    market["price"].attrs.update(units="price units", description="underlying price")
    if vol_shift is not None:
        shift = vol_shift.transpose("date", "underlying").reindex(underlying=names).fillna(0.0)
        shift = shift.assign_coords(date=market["date"].values).transpose("underlying", "date")
        market["date_vol_shift"] = shift
        market["date_vol_shift"].attrs.update(units="1/sqrt(year)", description="implied vol change per date")
    market["date"].attrs.update(description="day of the history")
    return replace(inputs, market=market, derived={})


def build_grid(sc: ScenarioFile) -> xr.Dataset:
    """The parameter grid dims (``price_scan_scale``, ``vol_scan_scale``) as coordinates."""
    grid = xr.Dataset()
    if sc.grid is not None:
        for name in ("price_scan_scale", "vol_scan_scale"):
            vals = getattr(sc.grid, name)
            if vals is not None:
                grid.coords[name] = np.asarray(vals, dtype=float)
    return grid


def contracts_from_arrays(
    sc: ScenarioFile,
    market: xr.Dataset,
    *,
    names,
    type,
    underlying,
    multiplier,
    expiry=None,
    strike=None,
    price=None,
    vol=None,
    group=None,
    option_on=None,
    american=None,
    premium_style=None,
    risk_array=None,
    composite_delta=None,
    month=None,
    n_points: int | None = None,
) -> xr.Dataset:
    """The ``contract`` Dataset from arrays (one entry per contract).

    This is the array path that scenario files, clearing-house files and large synthetic or
    stored books share. Missing optional arrays default to "not given" (NaN / False).

    Parameters
    ----------
    sc
        The scenario (valuation date, FX table, file name for errors).
    market
        The market Dataset (its ``underlying`` coordinate resolves ``underlying``).
    names, type, underlying
        Contract names, types (future | call | put | stock | cfd) and underlying names.
    multiplier
        Currency per price point per contract.
    expiry
        ``datetime64[D]`` expiries (NaT where none).
    strike, price, vol
        Options' strikes, given prices (futures settlement / option premium) and given vols [decimal]; NaN = not given.
    group
        Combined commodity / class group (default: the underlying).
    option_on
        ``"future"`` (Black-76) or ``"spot"`` (Black-Scholes-Merton) per option; ignored for others.
    american, premium_style
        Booleans per contract (American exercise; premium-style option).
    risk_array, composite_delta
        Given SPAN risk arrays ``(n, n_points)`` (NaN rows = compute) and composite deltas.
    month
        Contract month (YYYYMM) for the SPAN delta ledger; default (or 0): from the expiry.
    """
    file = sc.file
    n = len(names)
    type_ = np.asarray(type, dtype=object)
    und = np.asarray(underlying, dtype=object)
    und_names = market["underlying"].values.tolist()
    und_index_map = {u: i for i, u in enumerate(und_names)}
    try:
        und_index = np.array([und_index_map[u] for u in und], dtype=np.int64)
    except KeyError as e:
        raise InputError(f"unknown underlying {e.args[0]!r}", file=file, key_path="contracts") from None

    def floats(a):
        return np.full(n, np.nan) if a is None else np.asarray(a, dtype=float)

    def bools(a, default=False):
        return np.full(n, default) if a is None else np.asarray(a, dtype=bool)

    expiry = (
        np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
        if expiry is None
        else np.asarray(expiry, dtype="datetime64[D]")
    )
    as_of = np.datetime64(sc.as_of_date, "D")
    days = (expiry - as_of).astype("timedelta64[D]").astype(float)
    days[np.isnat(expiry)] = np.nan
    t = np.maximum(days, 0.0) / DAYS_PER_YEAR
    exp_y = expiry.astype("datetime64[Y]").astype(np.int64) + 1970
    exp_m = expiry.astype("datetime64[M]").astype(np.int64) % 12 + 1
    from_expiry = np.where(np.isnat(expiry), 0, exp_y * 100 + exp_m).astype(np.int64)
    if month is None:
        month = from_expiry
    else:
        month = np.asarray(month, dtype=np.int64)
        month = np.where(month > 0, month, from_expiry)

    is_option = np.isin(type_, ["call", "put"])
    on_future = np.asarray(option_on if option_on is not None else [""] * n, dtype=object) == "future"
    model = np.where(is_option, np.where(on_future, pricing.BLACK76, pricing.BSM), pricing.LINEAR).astype(
        np.int64
    )
    if n_points is None:
        n_points = 16 if sc.span is None or sc.span.scenario_set is None else len(sc.span.scenario_set)
    ra = np.full((n, n_points), np.nan) if risk_array is None else np.asarray(risk_array, dtype=float)
    ccy = market["currency"].values[und_index] if n else np.array([], dtype=object)
    strike_a, price_a, vol_a = floats(strike), floats(price), floats(vol)
    contracts = xr.Dataset(
        {
            "type": ("contract", type_),
            "underlying": ("contract", und),
            "underlying_index": ("contract", und_index),
            "group": ("contract", und.copy() if group is None else np.asarray(group, dtype=object)),
            "multiplier": ("contract", np.asarray(multiplier, dtype=float)),
            "strike": ("contract", strike_a),
            "price": ("contract", price_a),
            "given_vol": ("contract", vol_a),
            "expiry": ("contract", expiry),
            "t": ("contract", t),
            "month": ("contract", month),
            "is_option": ("contract", is_option),
            "is_call": ("contract", type_ == "call"),
            "american": ("contract", bools(american) & is_option),
            "premium_style": ("contract", is_option & bools(premium_style, True)),
            "model": ("contract", model),
            "risk_array": (("contract", "scenario"), ra),
            "composite_delta": ("contract", floats(composite_delta)),
            "currency": ("contract", np.asarray(ccy, dtype=object)),
        },
        coords={"contract": np.asarray(names, dtype=object), "scenario": np.arange(1, n_points + 1)},
    )
    contracts["t"].attrs.update(units="year", description="time to expiry, ACT/365")
    contracts["multiplier"].attrs.update(units="currency per price point per contract")
    contracts["risk_array"].attrs.update(
        units="currency per long contract",
        description="given SPAN risk array (losses positive); NaN = compute",
    )

    # base vol: own vol, else implied from a given option premium, else the underlying's
    und_vol = market["vol"].values[und_index]
    base_vol = np.where(np.isnan(vol_a), und_vol, vol_a)
    implied_from = is_option & np.isnan(vol_a) & ~np.isnan(price_a)
    if implied_from.any():
        sel = np.flatnonzero(implied_from)
        ui = und_index[sel]
        iv = pricing.implied_vol(
            price_a[sel],
            model[sel],
            market["base_price"].values[ui],
            strike_a[sel],
            t[sel],
            market["rate"].values[ui],
            market["dividend_yield"].values[ui],
            type_[sel] == "call",
            contracts["american"].values[sel],
        )
        bad = np.flatnonzero(np.isnan(iv))
        if bad.size:
            raise InputError(
                "the option premium is outside the no-arbitrage bounds of its model: no implied vol",
                file=file,
                key_path=("contracts", str(names[sel[bad[0]]]), "price"),
            )
        base_vol[sel] = iv
    contracts["base_vol"] = ("contract", base_vol)
    needs_vol = is_option & np.isnan(base_vol) & np.isnan(ra).any(axis=1)
    if needs_vol.any():
        name = str(names[int(np.flatnonzero(needs_vol)[0])])
        u = und[int(np.flatnonzero(needs_vol)[0])]
        raise InputError(
            f"option {name!r} needs a vol: give contracts.{name}.vol, a premium (price), or market.{u}.vol",
            file=file,
            key_path=("contracts", name),
        )
    return contracts


def contract_indices(
    contracts: xr.Dataset,
    names,
    *,
    normalise=None,
    file: str | None = None,
    what: str = "",
    error: Callable[[int, str], InputError] | None = None,
) -> np.ndarray:
    """Positions of contract ``names`` in ``contracts`` (vectorised hash lookup).

    Parameters
    ----------
    contracts
        The contract Dataset.
    names
        Contract names, one per position.
    normalise
        Optional function applied to the names that do not match as given (e.g. strike spelling).
    file, what
        For the error: the input file, and a hint appended to the message.
    error
        Optional: the error for position ``i`` and a problem (e.g.
        :meth:`marginsim.positions.PositionTable.error`: names a row of a positions file);
        default: key path ``positions[i].contract`` of ``file``.

    Raises
    ------
    InputError
        Naming the first position whose contract is unknown (key path ``positions[i].contract``).
    """
    names = np.asarray(names, dtype=object)
    if names.ndim == 1 and names.size >= 2:
        # every name known (the usual case): one C-level pass of dict lookups, about 25 % faster
        # than a pandas hash index on a large book; otherwise the index below finds the misses
        known = {n: i for i, n in enumerate(contracts["contract"].values.tolist())}
        try:
            found = operator.itemgetter(*names.tolist())(known)
        except (KeyError, TypeError):
            pass
        else:
            return np.fromiter(found, dtype=np.int64, count=names.size)
    index = pd.Index(contracts["contract"].values)
    idx = index.get_indexer(names)
    miss = np.flatnonzero(idx < 0)
    if miss.size and normalise is not None:
        idx[miss] = index.get_indexer(np.array([normalise(str(x)) for x in names[miss]], dtype=object))
        miss = np.flatnonzero(idx < 0)
    if miss.size:
        i = int(miss[0])
        if error is not None:
            raise error(i, f"unknown contract {names[i]!r}{what}")
        raise InputError(
            f"unknown contract {names[i]!r}{what}", file=file, key_path=("positions", i, "contract")
        )
    return idx.astype(np.int64)


def book_from_arrays(contracts: xr.Dataset, *, contract, quantity, account=None) -> xr.Dataset:
    """The ``position`` Dataset from arrays.

    Parameters
    ----------
    contracts
        The contract Dataset the positions refer to.
    contract
        Contract names, or integer indices into ``contracts``.
    quantity
        Signed quantities [contracts], long positive.
    account
        Account names (default ``"main"``), or integer account codes.
    """
    contract = np.asarray(contract)
    n = contract.shape[0]
    if contract.dtype.kind in "iu":
        contract_index = contract.astype(np.int64)
    else:
        contract_index = contract_indices(contracts, contract)
    contract_names = contracts["contract"].values[contract_index]
    account = np.full(n, "main", dtype=object) if account is None else np.asarray(account)
    acct_index, acct_names = _factorize_accounts(account.reshape(-1))
    book = xr.Dataset(
        {
            # names are plain str objects: no conversion check of every element (fastpath)
            "contract": xr.Variable("position", contract_names, fastpath=True),
            "contract_index": ("position", contract_index),
            "quantity": ("position", np.asarray(quantity, dtype=float)),
            "account_index": ("position", acct_index.astype(np.int64)),
            "account_name": xr.Variable("account", as_names(acct_names), fastpath=True),
        },
        coords={"position": np.arange(n)},
    )
    book["quantity"].attrs.update(units="contracts", description="signed quantity, long positive")
    return book


def flat_grid(da: xr.DataArray, lead: list[str], gd: list[str], gshape: tuple[int, ...]) -> np.ndarray:
    """A DataArray as a numpy array with axes ``(lead..., grid flattened)``.

    Parameters
    ----------
    da
        Dims: every dim of ``lead`` and any of the grid dims ``gd``.
    lead
        Dims kept as the leading axes, in this order (e.g. ``["contract", "scenario"]``).
    gd
        The grid dims, in the order they are flattened (C order: the last varies fastest).
    gshape
        Size of each grid dim of ``gd``; a grid dim that ``da`` lacks is broadcast to it.

    Returns
    -------
    numpy.ndarray
        Shape ``(*lead sizes, prod(grid sizes))`` (last axis of length 1 without grid dims), the
        dtype of ``da``; also for an empty lead axis.
    """
    full = da
    for d, n in zip(gd, gshape):
        if d not in full.dims:
            full = full.expand_dims({d: n}, axis=-1)
    arr = full.transpose(*lead, *gd).values
    k = len(lead)
    return arr.reshape(arr.shape[:k] + (int(np.prod(arr.shape[k:])),))


def as_names(values, trusted: bool = False) -> np.ndarray:
    """Names as an object array of ``str`` (account numbers become their decimal strings).

    ``trusted``: an object array is taken as it is (books built by marginsim hold ``str``).
    """
    arr = np.asarray(values)
    if arr.dtype == object and (trusted or all(type(v) is str for v in arr)):
        return arr
    if arr.dtype.kind in "iu" and arr.ndim == 1:  # account numbers: their decimal strings
        return np.fromiter(map(str, arr.tolist()), dtype=object, count=arr.size)
    return arr.astype(str).astype(object)


def _factorize_accounts(account: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Account index of each position and the account names, in order of first appearance.

    Books are usually grouped by account (stored books must be); for numbers in non-decreasing
    order that is one vectorised pass, otherwise a hash factorisation.
    """
    if account.dtype.kind in "iu" and account.size and bool(np.all(account[1:] >= account[:-1])):
        new = np.empty(account.size, dtype=bool)
        new[0] = True
        np.not_equal(account[1:], account[:-1], out=new[1:])
        return np.cumsum(new) - 1, account[new]
    return pd.factorize(account)
