"""The data model: a scenario file becomes xarray Datasets.

- **Book**: dim ``position`` (one row of the portfolio: contract x account).
- **Contracts**: dim ``contract`` (instrument definitions, pricing model codes, given risk arrays).
- **Market**: dim ``underlying`` plus the what-if grid dims (``shift``, ``vol_shift``, ``step``...).
- **Grid**: a coordinates-only Dataset of the grid dims that are method parameters rather than
  market moves (``price_scan_scale``, ``vol_scan_scale``).

Every method consumes an :class:`Inputs` bundle of these; nothing here computes margin.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from .errors import InputError
from .kernels import pricing
from .scenario import ScenarioFile

__all__ = ["Inputs", "build_inputs", "GRID_DIMS", "DAYS_PER_YEAR"]

#: Day count of times inside kernels (ACT/365).
DAYS_PER_YEAR = 365.0

#: The grid dims, in the order results list them.
GRID_DIMS = ("shift", "vol_shift", "price_scan_scale", "vol_scan_scale", "step")

_MODEL_OF_TYPE = {"future": pricing.LINEAR, "stock": pricing.LINEAR, "cfd": pricing.LINEAR}


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
        Dataset over ``contract`` (see :func:`build_inputs`).
    market
        Dataset over ``underlying`` and the market grid dims: ``price``, ``vol``, ``rate``,
        ``dividend_yield``, ``currency``, ``fx``.
    grid
        Coordinates of the parameter grid dims (``price_scan_scale``, ``vol_scan_scale``).
    """

    scenario: ScenarioFile
    book: xr.Dataset
    contracts: xr.Dataset
    market: xr.Dataset
    grid: xr.Dataset = field(default_factory=xr.Dataset)

    @property
    def grid_dims(self) -> tuple[str, ...]:
        """The what-if dims present, in result order."""
        present = set(self.market.dims) | set(self.grid.dims)
        return tuple(d for d in GRID_DIMS if d in present)

    @property
    def accounts(self) -> list[str]:
        return [str(a) for a in self.book["account_name"].values]

    def underlying_level(self) -> xr.DataArray:
        """Price level each contract moves with [price units], over ``contract`` and market grid dims.

        Futures with a given settlement price move proportionally with their underlying; every
        other contract takes the underlying's market price (for an option on a future, the
        underlying entry is the futures price).
        """
        c = self.contracts
        mkt_price = self.market["price"].isel(underlying=c["underlying_index"])
        base = self.market["base_price"].isel(underlying=c["underlying_index"])
        given = c["price"]
        is_fut = c["type"] == "future"
        level = xr.where(is_fut & given.notnull(), given * mkt_price / base, mkt_price)
        level.attrs.update(units="price units", description="price level the contract moves with")
        return level

    def contract_vol(self) -> xr.DataArray:
        """Implied vol per contract [decimal], over ``contract`` and market grid dims.

        The contract's own ``vol``; else implied from its given premium; else the underlying's.
        Grid vol shifts apply on top and are floored at 0.
        """
        c = self.contracts
        base_vol = c["base_vol"]
        shift = self.market["vol_shift_value"] if "vol_shift_value" in self.market else 0.0
        vol = (base_vol + shift).clip(min=0.0)
        vol.attrs.update(units="1/sqrt(year)", description="implied volatility")
        return vol

    def rate(self) -> xr.DataArray:
        return self.market["rate"].isel(underlying=self.contracts["underlying_index"])

    def dividend_yield(self) -> xr.DataArray:
        return self.market["dividend_yield"].isel(underlying=self.contracts["underlying_index"])

    def contract_value(
        self,
        level: xr.DataArray | None = None,
        vol: xr.DataArray | None = None,
        t: xr.DataArray | None = None,
    ) -> xr.DataArray:
        """Model value of one unit of each contract [price units] (no multiplier).

        Options with a given premium are exact at the base market: value = premium + (model value
        now - model value at the base market).
        """
        c = self.contracts
        level = self.underlying_level() if level is None else level
        vol = self.contract_vol() if vol is None else vol
        t = c["t"] if t is None else t
        return _value(c, level, vol, t, self.rate(), self.dividend_yield())


def _value(c: xr.Dataset, s, vol, t, r, q) -> xr.DataArray:
    k = c["strike"].fillna(0.0)
    return xr.apply_ufunc(
        pricing.value,
        c["model"],
        s,
        k,
        t.fillna(0.0),
        vol,
        r,
        q,
        c["is_call"],
        c["american"],
        dask="parallelized",
        output_dtypes=[float],
    )


def _month(d: dt.date | None) -> int:
    return 0 if d is None else d.year * 100 + d.month


def build_inputs(sc: ScenarioFile) -> Inputs:
    """Turn a validated scenario file into the xarray data model.

    Parameters
    ----------
    sc
        A validated scenario file (:func:`marginsim.scenario.load_scenario`).

    Returns
    -------
    Inputs
        Book, contracts, market and grid Datasets.
    """
    file = sc.file
    as_of = sc.as_of_date

    # -- market ---------------------------------------------------------------------------
    und_names = list(sc.market)
    und_index = {n: i for i, n in enumerate(und_names)}
    m = [sc.market[n] for n in und_names]
    ccy = [u.currency or sc.currency for u in m]
    fx = [sc.fx_rate(c, key_path=f"market.{n}.currency") for c, n in zip(ccy, und_names)]
    base_price = np.array([u.price for u in m], dtype=float)
    market = xr.Dataset(
        {
            "base_price": ("underlying", base_price),
            "price": ("underlying", base_price),
            "vol": ("underlying", np.array([np.nan if u.vol is None else u.vol for u in m], dtype=float)),
            "rate": ("underlying", np.array([u.rate for u in m], dtype=float)),
            "dividend_yield": ("underlying", np.array([u.dividend_yield for u in m], dtype=float)),
            "currency": ("underlying", np.array(ccy, dtype=object)),
            "fx": ("underlying", np.array(fx, dtype=float)),
        },
        coords={"underlying": und_names},
        attrs={"as_of": str(sc.as_of), "currency": sc.currency},
    )
    market["price"].attrs.update(units="price units", description="underlying price")
    market["fx"].attrs.update(
        units=f"{sc.currency} per unit", description="value of one unit of the currency"
    )

    grid = xr.Dataset()
    g = sc.grid
    if g is not None:
        if g.shift is not None:
            if isinstance(g.shift, dict):
                n = len(next(iter(g.shift.values())))
                sh = np.zeros((len(und_names), n))
                for und, vals in g.shift.items():
                    sh[und_index[und]] = vals
                coord = np.arange(n)
            else:
                sh = np.broadcast_to(np.asarray(g.shift, dtype=float), (len(und_names), len(g.shift)))
                coord = np.asarray(g.shift, dtype=float)
            if np.any(sh <= -1):
                raise InputError(
                    "a shift of -100 % or less gives a price of zero or below",
                    file=file,
                    key_path="grid.shift",
                )
            shift = xr.DataArray(sh, dims=("underlying", "shift"), coords={"shift": coord})
            market["price"] = market["price"] * (1.0 + shift)
            market["shift_value"] = shift
        if g.path is not None:
            n = len(next(iter(g.path.values())))
            factor = np.ones((len(und_names), n))
            for und, vals in g.path.items():
                factor[und_index[und]] = np.asarray(vals, dtype=float) / sc.market[und].price
            path = xr.DataArray(factor, dims=("underlying", "step"), coords={"step": np.arange(n)})
            market["price"] = market["price"] * path
        if g.vol_shift is not None:
            market["vol_shift_value"] = xr.DataArray(
                np.asarray(g.vol_shift, dtype=float), dims="vol_shift", coords={"vol_shift": g.vol_shift}
            )
        for name in ("price_scan_scale", "vol_scan_scale"):
            vals = getattr(g, name)
            if vals is not None:
                grid.coords[name] = np.asarray(vals, dtype=float)

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

    is_option = np.array([c.type in ("call", "put") for c in cs], dtype=bool)
    model = np.array(
        [_MODEL_OF_TYPE.get(c.type, pricing.BLACK76 if c.option_on == "future" else pricing.BSM) for c in cs],
        dtype=np.int64,
    )
    t = np.array(
        [np.nan if c.expiry is None else max((c.expiry - as_of).days, 0) / DAYS_PER_YEAR for c in cs],
        dtype=float,
    )
    contracts = xr.Dataset(
        {
            "type": ("contract", np.array([c.type for c in cs], dtype=object)),
            "underlying": ("contract", np.array([c.underlying for c in cs], dtype=object)),
            "underlying_index": ("contract", np.array([und_index[c.underlying] for c in cs], dtype=np.int64)),
            "group": ("contract", np.array([c.group or c.underlying for c in cs], dtype=object)),
            "multiplier": ("contract", arr(lambda c: c.multiplier)),
            "strike": ("contract", arr(lambda c: c.strike)),
            "price": ("contract", arr(lambda c: c.price)),
            "given_vol": ("contract", arr(lambda c: c.vol)),
            "t": ("contract", t),
            "month": ("contract", np.array([_month(c.expiry) for c in cs], dtype=np.int64)),
            "is_option": ("contract", is_option),
            "is_call": ("contract", np.array([c.type == "call" for c in cs], dtype=bool)),
            "american": ("contract", np.array([c.exercise == "american" for c in cs], dtype=bool)),
            "premium_style": ("contract", is_option & np.array([c.premium_style == "premium" for c in cs])),
            "model": ("contract", model),
            "risk_array": (("contract", "scenario"), ra),
            "composite_delta": ("contract", arr(lambda c: c.composite_delta)),
            "currency": ("contract", np.array([ccy[und_index[c.underlying]] for c in cs], dtype=object)),
        },
        coords={"contract": names, "scenario": np.arange(1, n_points + 1)},
    )
    contracts["t"].attrs.update(units="year", description="time to expiry, ACT/365")
    contracts["multiplier"].attrs.update(units="currency per price point per contract")
    contracts["risk_array"].attrs.update(
        units="currency per long contract",
        description="given SPAN risk array (losses positive); NaN = compute",
    )

    # base vol: own vol, else implied from a given option premium, else the underlying's
    und_vol = market["vol"].values[contracts["underlying_index"].values]
    base_vol = np.where(np.isnan(contracts["given_vol"].values), und_vol, contracts["given_vol"].values)
    implied_from = is_option & np.isnan(contracts["given_vol"].values) & ~np.isnan(contracts["price"].values)
    if implied_from.any():
        sel = np.flatnonzero(implied_from)
        ui = contracts["underlying_index"].values[sel]
        iv = pricing.implied_vol(
            contracts["price"].values[sel],
            model[sel],
            base_price[ui],
            contracts["strike"].values[sel],
            t[sel],
            market["rate"].values[ui],
            market["dividend_yield"].values[ui],
            contracts["is_call"].values[sel],
            contracts["american"].values[sel],
        )
        bad = np.flatnonzero(np.isnan(iv))
        if bad.size:
            name = names[sel[bad[0]]]
            raise InputError(
                "the option premium is outside the no-arbitrage bounds of its model: no implied vol",
                file=file,
                key_path=("contracts", name, "price"),
            )
        base_vol[sel] = iv
    contracts["base_vol"] = ("contract", base_vol)
    needs_vol = is_option & np.isnan(base_vol) & np.isnan(ra).any(axis=1)
    if needs_vol.any():
        name = names[int(np.flatnonzero(needs_vol)[0])]
        und = sc.contracts[name].underlying
        raise InputError(
            f"option {name!r} needs a vol: give contracts.{name}.vol, a premium (price), or market.{und}.vol",
            file=file,
            key_path=("contracts", name),
        )

    # -- book -----------------------------------------------------------------------------
    contract_index = {n: i for i, n in enumerate(names)}
    pos = sc.positions
    acct_names: list[str] = []
    acct_index: dict[str, int] = {}
    for p in pos:
        if p.account not in acct_index:
            acct_index[p.account] = len(acct_names)
            acct_names.append(p.account)
    book = xr.Dataset(
        {
            "contract": ("position", np.array([p.contract for p in pos], dtype=object)),
            "contract_index": (
                "position",
                np.array([contract_index[p.contract] for p in pos], dtype=np.int64),
            ),
            "quantity": ("position", np.array([p.quantity for p in pos], dtype=float)),
            "account": ("position", np.array([p.account for p in pos], dtype=object)),
            "account_index": ("position", np.array([acct_index[p.account] for p in pos], dtype=np.int64)),
            "account_name": ("account", np.array(acct_names, dtype=object)),
        },
        coords={"position": np.arange(len(pos))},
    )
    book["quantity"].attrs.update(units="contracts", description="signed quantity, long positive")
    return Inputs(scenario=sc, book=book, contracts=contracts, market=market, grid=grid)
