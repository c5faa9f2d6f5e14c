"""Margin rates of CFD positions (``spec/cfd.md`` section 2): ESMA / CBI leverage caps, the broker's rates.

The retail leverage cap of an underlying's class (data: ``cfd.leverage``,
``cfd.major_currencies``, ``cfd.major_indices``), the broker's own volatility-based rate, and
the applied initial ``max(broker initial, regulatory initial)`` and maintenance
``max(broker maintenance, close_out_fraction x applied initial)`` (retail; professional clients:
the broker's rates, no caps).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ...errors import InputError
from ...params.cfd import CfdParams
from ...scenario import ScenarioFile

__all__ = [
    "classify_underlying",
    "broker_rates",
    "applied_rates",
    "check_underlyings",
    "UnderlyingRates",
    "underlying_rates",
]

_ISO = frozenset(
    "USD EUR GBP JPY CHF CAD AUD NZD SEK NOK DKK PLN CZK HUF HKD SGD CNH CNY MXN ZAR TRY ILS RUB "
    "KRW INR BRL THB TWD SAR AED KWD QAR XAU XAG XPT XPD".split()
)
_PAIR = re.compile(r"^([A-Z]{3})[./\-_ ]?([A-Z]{3})$")
_METALS = {"XAG", "XPT", "XPD"}
_GOLD_NAMES = {"XAU", "GOLD"}


def _norm(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", name.upper())


def classify_underlying(
    name: str,
    params: CfdParams,
    *,
    cfd_class: str | None = None,
    product_class: str | None = None,
) -> str:
    """The leverage class of an underlying.

    In order: ``cfd.underlyings.<name>.cfd_class``; the market entry's ``cfd_class`` (passed as
    ``cfd_class``); a currency pair (``EUR.USD``, ``EUR/USD``, ``EURUSD``): ``major_fx`` when both
    currencies are in ``params.major_currencies``, ``gold`` with XAU, ``commodity`` with another
    metal, else ``nonmajor_fx``; a name or alias of ``params.major_indices``: ``major_index``;
    ``XAU`` / ``GOLD``: ``gold``; an index ``product_class``: ``nonmajor_index``; else
    ``individual_equity`` (ESMA: "individual equities and other reference values").

    Parameters
    ----------
    name
        The underlying's key in ``market``.
    params
        The CFD parameters (tables of classes, major currencies and indices).
    cfd_class, product_class
        The market entry's ``cfd_class`` and ``product_class``, if any.

    Returns
    -------
    str
        A key of ``params.leverage``.
    """
    own = params.underlyings.get(name)
    if own is not None and own.cfd_class is not None:
        return own.cfd_class
    if cfd_class is not None:
        return cfd_class
    upper = name.upper().strip()
    m = _PAIR.match(upper)
    if m and m.group(1) in _ISO and m.group(2) in _ISO:
        pair = {m.group(1), m.group(2)}
        if "XAU" in pair:
            return "gold"
        if pair & _METALS:
            return "commodity"
        major = set(params.major_currencies)
        return "major_fx" if pair <= major else "nonmajor_fx"
    key = _norm(name)
    for index, aliases in params.major_indices.items():
        if key in {_norm(index), *(_norm(a) for a in aliases)}:
            return "major_index"
    if key in _GOLD_NAMES:
        return "gold"
    if product_class in ("broad_index_high_cap", "broad_index", "sector_index"):
        return "nonmajor_index"
    return "individual_equity"


def broker_rates(
    historical_vol: np.ndarray,
    maintenance: np.ndarray,
    initial: np.ndarray,
    *,
    z: float,
    horizon_days: float,
    minimum: float,
    initial_ratio: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The broker's own maintenance and initial rates.

    Parameters
    ----------
    historical_vol
        Historical vol [decimal per sqrt(year)]; NaN: none.
    maintenance, initial
        Given broker rates [fraction of notional]; NaN: not given.
    z, horizon_days, minimum
        The vol rule: ``max(minimum, z * vol * sqrt(horizon_days / 365))`` [fraction].
    initial_ratio
        Broker initial / maintenance (1.25) where the initial rate is not given.

    Returns
    -------
    (maintenance, initial)
        Rates [fraction of notional]; 0 where neither a rate nor a vol is given.
    """
    vol = np.asarray(historical_vol, dtype=float)
    from_vol = np.where(np.isnan(vol), 0.0, np.maximum(minimum, z * vol * np.sqrt(horizon_days / 365.0)))
    mm = np.where(np.isnan(maintenance), from_vol, maintenance)
    im = np.where(np.isnan(initial), initial_ratio * mm, initial)
    return mm, np.maximum(im, mm)


def applied_rates(
    regulatory_initial: np.ndarray,
    broker_maintenance: np.ndarray,
    broker_initial: np.ndarray,
    *,
    close_out_fraction: float,
    retail: np.ndarray | bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Applied initial and maintenance rates (``spec/cfd.md`` section 2).

    Retail: initial = ``max(broker initial, regulatory initial)``; maintenance =
    ``max(broker maintenance, close_out_fraction x applied initial)`` (the close-out level of the
    initial margin posted; with the 1.25 broker ratio this equals the spec's
    ``max(broker maintenance, 50 % of the regulatory initial)``). Professional: the broker's rates.

    Parameters
    ----------
    regulatory_initial
        1 / leverage cap [fraction of notional] (retail).
    broker_maintenance, broker_initial
        The broker's rates [fraction of notional].
    close_out_fraction
        Close-out level as a fraction of the initial margin (0.5).
    retail
        Whether the client is retail (bool or array).

    Returns
    -------
    (initial, maintenance)
        Applied rates [fraction of notional].
    """
    retail = np.asarray(retail, dtype=bool)
    reg = np.where(retail, regulatory_initial, 0.0)
    im = np.maximum(broker_initial, reg)
    mm = np.where(retail, np.maximum(broker_maintenance, close_out_fraction * im), broker_maintenance)
    return im, mm


def check_underlyings(params: CfdParams, underlyings: list[str], file: str | None) -> None:
    """``cfd.underlyings`` names only underlyings of the market (else an input error)."""
    for name in params.underlyings:
        if name not in underlyings:
            raise InputError(f"unknown underlying {name!r}", file=file, key_path=("cfd", "underlyings", name))


@dataclass(frozen=True)
class UnderlyingRates:
    """Per underlying of the market (in its order): class, rates and financing benchmark.

    Attributes
    ----------
    cfd_class
        Leverage class (object array of keys of ``cfd.leverage``).
    regulatory_initial
        1 / leverage cap [fraction of notional].
    broker_maintenance, broker_initial
        The broker's own rates [fraction of notional]; 0 where neither a rate nor a vol is given.
    benchmark
        Financing benchmark [decimal per year]: ``cfd.financing.benchmark`` of the underlying's
        currency, else its market rate.
    """

    cfd_class: np.ndarray
    regulatory_initial: np.ndarray
    broker_maintenance: np.ndarray
    broker_initial: np.ndarray
    benchmark: np.ndarray


def underlying_rates(params: CfdParams, sc: ScenarioFile, market: xr.Dataset) -> UnderlyingRates:
    """Class, regulatory and broker rates and financing benchmark of every underlying of ``market``.

    Raises
    ------
    InputError
        A class has no leverage cap in ``cfd.leverage``.
    """
    und_names = market["underlying"].values.tolist()
    file = sc.file
    cls_u = np.array(
        [
            classify_underlying(
                n,
                params,
                cfd_class=sc.market[n].cfd_class if n in sc.market else None,
                product_class=sc.market[n].product_class if n in sc.market else None,
            )
            for n in und_names
        ],
        dtype=object,
    )
    for n, c in zip(und_names, cls_u):
        if c not in params.leverage:
            raise InputError(
                f"class {c!r} of {n!r} has no leverage cap in cfd.leverage",
                file=file,
                key_path="cfd.leverage",
            )
    reg_u = np.array([1.0 / params.leverage[c] for c in cls_u]) if und_names else np.zeros(0)

    def und_param(key: str) -> np.ndarray:
        vals = [
            getattr(params.underlyings.get(n), key, None) if n in params.underlyings else None
            for n in und_names
        ]
        return np.array([np.nan if v is None else v for v in vals], dtype=float)

    rule = params.broker_vol_rule
    bmm_u, bim_u = broker_rates(
        und_param("historical_vol"),
        und_param("broker_maintenance"),
        und_param("broker_initial"),
        z=rule.z,
        horizon_days=rule.horizon_days,
        minimum=rule.minimum,
        initial_ratio=params.broker_initial_ratio,
    )
    bench_u = np.array(
        [
            params.financing.benchmark.get(str(c), r)
            for c, r in zip(market["currency"].values, market["rate"].values)
        ],
        dtype=float,
    )
    return UnderlyingRates(cls_u, reg_u, bmm_u, bim_u, bench_u)
