"""A clearing-house SPAN file as the project's data model.

:func:`inputs_from_span_file` turns a parsed :class:`~marginsim.io.span.records.SpanFile` into the
same :class:`~marginsim.model.Inputs` a scenario file gives (contracts with their given risk
arrays and composite deltas, a market, a book) plus the SPAN parameters the file publishes
(scenario set, combined commodities with their intra spreads, tiers, SOM rate and method, spot
charges, inter spreads), so every SPAN component runs on it unchanged.

Contract identifiers
--------------------
Positions name the file's contracts as ``PFCODE:KIND:PERIOD[:STRIKE]``:

- futures: ``AKBNKE:F:201606S0`` (portfolio code, ``F``, the file's period code),
- options: ``AKBNKE:C:201606S0:6.25`` / ``AKBNKE:P:201606S0:6.25`` (strike as written in the
  file, trailing zeros dropped; ``6.250`` and ``6.25`` name the same option),
- physicals: ``AKBNKE:PHY``.

``marginsim span-file FILE --contracts [CC]`` lists them. The :class:`~marginsim.model.Inputs`
built from a file carry :func:`canonical_id` as their ``normalise_contract_id``, so that
:meth:`~marginsim.model.Inputs.with_book` and stored books accept any spelling of a strike.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from pydantic import ValidationError

from ...errors import InputError
from ...model import Inputs, book_from_arrays, build_market, contract_indices, contracts_from_arrays
from ...params.span import SpanParams
from ...scenario import Contract, ScenarioFile
from .checks import CLEARING_ORG_PATH
from .ids import canonical_id, contract_id, portfolio_contract_ids
from .reader import read_span_xml
from .records import AnyPortfolio, CombinedCommodity, DeltaSpread, Rate, SpanFile

__all__ = [
    "contract_id",
    "canonical_id",
    "clear_span_file_cache",
    "file_contract_ids",
    "file_contract_table",
    "span_params_from_file",
    "inputs_from_span_file",
    "load_span_file",
]


@functools.lru_cache(maxsize=8)
def _read_cached(path: str, mtime_ns: int, size: int) -> SpanFile:
    return read_span_xml(path)


def clear_span_file_cache() -> None:
    """Forget the files :func:`load_span_file` has read (the next load parses again)."""
    _read_cached.cache_clear()


def load_span_file(path: str | os.PathLike[str], *, scenario_file: str | None = None) -> SpanFile:
    """Read a SPAN XML file (cached per path, modification time and size).

    Parameters
    ----------
    path
        The SPAN XML file.
    scenario_file
        The scenario file that names it (for the error if it is missing).

    Raises
    ------
    InputError
        If the file is missing or is not a valid SPAN XML file.
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(
            f"clearing-house file not found: {p}", file=scenario_file, key_path="span.source"
        ) from None
    return _read_cached(str(p), st.st_mtime_ns, st.st_size)


def _month(period: np.ndarray) -> np.ndarray:
    """Contract month YYYYMM from the file's period codes (``201606S0`` -> 201606; 0 where none)."""
    head = np.char.ljust(np.asarray(period, dtype=str), 6).astype("<U6")
    ok = np.char.isdigit(head)
    return np.where(ok, np.where(ok, head, "0").astype(np.int64), 0).astype(np.int64)


def file_contract_table(sf: SpanFile) -> dict[str, np.ndarray]:
    """Every contract of the file as arrays: ids, kind, combined commodity, prices, risk arrays...

    Returns
    -------
    dict
        ``names`` (ids), ``type`` (future | call | put | stock), ``group`` (combined commodity),
        ``multiplier`` (cvf), ``price``, ``strike``, ``expiry`` (datetime64[D]), ``month``
        (YYYYMM), ``premium_style``, ``risk_array`` (n, points), ``composite_delta``, ``currency``,
        ``vol``.
    """
    cc_of: dict[tuple[str, int], str] = {}
    for cc in sf.combined_commodities.values():
        for link in cc.pf_links:
            cc_of[(link.exchange, link.pf_id)] = cc.code
    cols: dict[str, list] = {
        k: []
        for k in (
            "names",
            "type",
            "group",
            "multiplier",
            "price",
            "strike",
            "expiry",
            "period",
            "premium_style",
            "risk_array",
            "composite_delta",
            "currency",
            "vol",
            "on_future",
        )
    }

    def add(
        pf: AnyPortfolio,
        kind_names: Sequence[str] | np.ndarray,
        types: Sequence[str] | np.ndarray,
        strikes: np.ndarray,
        expiry: np.ndarray,
        premium: bool,
    ) -> None:
        c = pf.contracts
        n = len(c.ids)
        if n == 0:
            return
        group = cc_of.get((pf.exchange, pf.pf_id))
        if group is None:
            return  # a portfolio no combined commodity links: it cannot be margined
        cols["names"].append(np.asarray(kind_names, dtype=object))
        cols["type"].append(np.asarray(types, dtype=object))
        cols["group"].append(np.full(n, group, dtype=object))
        cols["multiplier"].append(np.asarray(c.cvf, dtype=float))
        cols["price"].append(np.asarray(c.price, dtype=float))
        cols["strike"].append(np.asarray(strikes, dtype=float))
        cols["expiry"].append(np.asarray(expiry, dtype="datetime64[D]"))
        cols["period"].append(np.asarray(c.period, dtype=object))
        cols["premium_style"].append(np.full(n, premium, dtype=bool))
        cols["risk_array"].append(np.asarray(c.risk_arrays, dtype=float))
        cols["composite_delta"].append(np.asarray(c.composite_delta, dtype=float))
        cols["currency"].append(np.full(n, pf.currency, dtype=object))
        cols["vol"].append(np.asarray(c.volatility, dtype=float))
        cols["on_future"].append(np.full(n, pf.pf_type in ("OOF",), dtype=bool))

    for ex in sf.exchanges:
        for phy in ex.physical_portfolios:
            n = len(phy.contracts.ids)
            add(
                phy,
                portfolio_contract_ids(phy),
                ["stock"] * n,
                np.full(n, np.nan),
                np.full(n, np.datetime64("NaT"), "datetime64[D]"),
                False,
            )
        for fut in ex.futures_portfolios:
            fc = fut.contracts
            add(
                fut,
                portfolio_contract_ids(fut),
                ["future"] * len(fc.ids),
                np.full(len(fc.ids), np.nan),
                fc.settlement_date,
                False,
            )
        for opt in ex.option_portfolios:
            oc = opt.contracts
            add(
                opt,
                portfolio_contract_ids(opt),
                np.where(oc.is_call, "call", "put"),
                oc.strike,
                oc.settlement_date,
                (opt.value_meth or "EQTY").upper() != "FUT",
            )
    if not cols["names"]:
        raise InputError(
            "the file holds no contract linked to a combined commodity (<pfLink>): nothing to margin",
            file=str(sf.path),
            key_path=CLEARING_ORG_PATH,
        )
    out = {k: np.concatenate(v) for k, v in cols.items()}
    out["month"] = _month(out.pop("period"))
    return out


def span_params_from_file(sf: SpanFile, rate_id: int = 1) -> dict[str, Any]:
    """The file's SPAN parameters in the scenario file's ``span`` format (a mapping).

    Intra spreads keep their priority, rate (currency per spread) and legs; tiers with periods
    become month ranges; SOM takes the first SOM tier's rate and ``somMeth``; spot rates become the
    spot-month charge; inter and super spreads keep priority, method (``W``: credit rate as a
    fraction, per spread or per leg; ``F``: flat amount per spread) and legs; ``wfprMeth`` becomes
    ``wfpr_method`` (with the CC's price scan range for the scan-range methods).
    """
    file = str(sf.path)
    pdef = sf.point_def(rate_id)
    if pdef is None:
        raise InputError("the file has no <pointDef>: no scenario set for its risk arrays", file=file)
    scan = pdef.scan
    scenario_set = [
        {"price": float(p), "vol": float(v), "weight": float(w), "pair": int(q)}
        for p, v, w, q in zip(scan.price_move, scan.vol_move, scan.weight, scan.paired_point)
    ]
    ccs: dict[str, Any] = {}
    for code, cc in sf.combined_commodities.items():
        entry: dict[str, Any] = {"currency": cc.currency}
        tiers = []
        for t in cc.intra_tiers:
            if t.tn >= 1 and t.start_period and t.end_period:
                tiers.append({"tier": t.tn, "months": [int(t.start_period[:6]), int(t.end_period[:6])]})
        if tiers:
            entry["tiers"] = tiers
        spreads = _intra_spreads(cc, rate_id, file)
        if spreads:
            entry["intra_spreads"] = spreads
        som = cc.som_rate(rate_id)
        if np.isfinite(som) and som > 0:
            entry["som"] = {"rate": som, "method": "net" if (cc.som_meth or "").upper() == "NET" else "gross"}
        spot = _spot(cc, rate_id, file)
        if spot is not None:
            entry["spot"] = spot
        entry.update(_rate_class(sf, cc, rate_id))
        entry.update(_wfpr(sf, cc, rate_id))
        ccs[code] = entry
    inter = [_inter_spread(sp, file, rate_id) for sp in sf.inter_spreads]
    super_ = [_inter_spread(sp, file, rate_id, super_=True) for sp in sf.super_spreads]
    out: dict[str, Any] = {
        "combined_commodities": ccs,
        "inter_spreads": [x for x in inter if x is not None],
        "scenario_set": scenario_set,
    }
    if sf.super_spreads:
        out["super_spreads"] = [x for x in super_ if x is not None]
    return out


#: The file's ``wfprMeth`` codes and the ``wfpr_method`` they become.
_WFPR_METHODS = {"NORMAL": "normal", "SCANRANGE": "scan_range", "SCANRANGE_CAP": "scan_range_cap"}


def _wfpr(sf: SpanFile, cc: CombinedCommodity, rate_id: int) -> dict[str, Any]:
    """The weighted futures price risk method of ``cc`` (``wfprMeth``) and, for the scan-range
    methods, its price scan range per delta: the largest ``priceScan`` of the CC's futures (else of
    its other contracts) [CC currency per contract; a future's delta is 1]."""
    code = (cc.wfpr_meth or "NORMAL").upper()
    if code not in _WFPR_METHODS:
        raise InputError(
            f"<wfprMeth> {cc.wfpr_meth!r} is not one of {', '.join(_WFPR_METHODS)}",
            file=str(sf.path),
            key_path=f"{cc.key_path}.wfprMeth" if cc.key_path else f"ccDef[{cc.code}].wfprMeth",
        )
    if code == "NORMAL":
        return {}
    futures: list[np.ndarray] = []
    others: list[np.ndarray] = []
    for link in cc.pf_links:
        try:
            pf = sf.portfolio_by_id(link.exchange, link.pf_id)
        except KeyError:
            continue
        scan = np.asarray(pf.contracts.scan_rates.price_scan, dtype=float)
        (futures if pf.pf_type == "FUT" else others).append(scan[np.isfinite(scan)])
    for found in (futures, others):
        values = np.concatenate(found) if found else np.zeros(0)
        if values.size and values.max() > 0:
            return {"wfpr_method": _WFPR_METHODS[code], "wfpr_scan_range": float(values.max())}
    raise InputError(
        f"<wfprMeth> {code} needs a price scan range, and no contract of {cc.code} has a <priceScan>",
        file=str(sf.path),
        key_path=f"{cc.key_path}.wfprMeth" if cc.key_path else f"ccDef[{cc.code}].wfprMeth",
    )


def _inter_spread(sp: DeltaSpread, file: str, rate_id: int, super_: bool = False) -> dict[str, Any] | None:
    """An inter (or super) spread of the file in the ``span`` format; None without a rate for
    ``rate_id``. Methods W (credit rate per spread, or per leg) and F (flat amount per spread).

    Period legs (``pLeg``) of a super spread (``super_``) become ``month`` legs (the contract month
    ``YYYYMM`` of their period): super spreads are formed on the months' deltas. A ``pLeg`` of an
    inter spread (formed on each combined commodity's net delta left after the intra spreads), an
    ``rpLeg`` or nested ``dSpread``, and two period legs on two periods of one month of one
    combined commodity are input errors."""
    where = sp.key_path or f"{'superSpreads' if super_ else 'interSpreads'}.dSpread[{sp.spread}]"
    kind = "super spread" if super_ else "inter spread"
    meth = sp.charge_method.upper()
    if meth not in ("W", "F"):
        raise InputError(
            f"{kind} {sp.spread} uses method {sp.charge_method!r} (per month per spread); this version "
            "computes methods W and F",
            file=file,
            key_path=where,
        )
    if sp.unparsed_legs:
        raise InputError(
            f"{kind} {sp.spread} has legs this version cannot use (rpLeg / nested dSpread)",
            file=file,
            key_path=where,
        )
    if not super_ and any(leg.period for leg in sp.legs):
        raise InputError(
            f"inter spread {sp.spread} has a period leg (pLeg); this version takes period legs in intra "
            "and super spreads (formed on the months' deltas), not in inter spreads (formed on each "
            "combined commodity's net delta left after the intra spreads)",
            file=file,
            key_path=where,
        )
    period_of: dict[tuple[str, int], str] = {}
    legs: list[dict[str, Any]] = []
    for leg in sp.legs:
        entry: dict[str, Any] = {"group": leg.cc, "side": leg.side, "ratio": leg.ratio}
        if leg.period is not None:
            month = int(leg.period[:6])
            other = period_of.setdefault((leg.cc, month), leg.period)
            if other != leg.period:
                raise InputError(
                    f"super spread {sp.spread} has period legs of {leg.cc} on {other!r} and {leg.period!r}, "
                    "two periods of one month; this version nets deltas by contract month",
                    file=file,
                    key_path=where,
                )
            entry["month"] = month
        legs.append(entry)
    rate = sp.rate(rate_id)
    leg_rates = [_pick(leg.rates, rate_id) for leg in sp.legs]
    if meth == "F":
        if not np.isfinite(rate):
            return None
        return {"priority": sp.spread, "method": "F", "flat_rate": rate, "legs": legs}
    if not np.isfinite(rate) and not all(np.isfinite(r) for r in leg_rates):
        return None
    for entry, r in zip(legs, leg_rates):
        if np.isfinite(r):
            entry["credit_rate"] = r
    out: dict[str, Any] = {"priority": sp.spread, "legs": legs}
    if np.isfinite(rate):
        out["credit_rate"] = rate
    return out


def _pick(rates: Sequence[Rate], rate_id: int) -> float:
    """The value of ``rates`` for ``rate_id`` (NaN if none)."""
    return next((r.value for r in rates if r.rate_id == rate_id), float("nan"))




#: Intra-commodity charge methods this version computes (``F``: flat rate per spread formed).
INTRA_METHODS = frozenset({"F"})


def _intra_spreads(cc: CombinedCommodity, rate_id: int, file: str) -> list[dict[str, Any]]:
    """The intra spreads of ``cc`` with a rate for ``rate_id``, as ``span.intra_spreads`` entries.

    Tier legs (``tLeg``) keep their tier; period legs (``pLeg``) become a ``month`` leg (the
    contract month ``YYYYMM`` of their period). Priorities (``spread``), delta ratios (``i``) and
    the flat charge rate per spread are the file's. A leg on another combined commodity, an
    ``rpLeg`` or nested ``dSpread``, a charge method other than ``F`` and two period legs that
    name different periods of one month (deltas are netted by month) are input errors.
    """
    code = cc.code
    spreads = []
    month_of: dict[int, str] = {}
    for sp in cc.d_spreads:
        rate = sp.rate(rate_id)
        if not np.isfinite(rate):
            continue
        where = sp.key_path or f"ccDef[{code}].dSpread[{sp.spread}]"
        if any(leg.cc != code for leg in sp.legs) or sp.unparsed_legs:
            raise InputError(
                f"intra spread {sp.spread} of {code} has legs this version cannot use (legs of "
                "another combined commodity, or rpLeg / nested dSpread)",
                file=file,
                key_path=where,
            )
        if sp.charge_method.upper() not in INTRA_METHODS:
            raise InputError(
                f"intra spread {sp.spread} of {code} uses charge method {sp.charge_method!r}; this "
                "version computes intra spreads with method F (a flat rate per spread)",
                file=file,
                key_path=f"{where}.chargeMeth",
            )
        legs: list[dict[str, Any]] = []
        for leg in sp.legs:
            if leg.period is None:
                legs.append({"tier": leg.tier, "side": leg.side, "ratio": leg.ratio})
                continue
            month = int(leg.period[:6])
            other = month_of.setdefault(month, leg.period)
            if other != leg.period:
                raise InputError(
                    f"intra spread {sp.spread} of {code} has period legs on {other!r} and {leg.period!r}, "
                    "two periods of one month; this version nets deltas by contract month",
                    file=file,
                    key_path=where,
                )
            legs.append({"month": month, "side": leg.side, "ratio": leg.ratio})
        spreads.append({"priority": sp.spread, "rate": rate, "legs": legs})
    return spreads


def _spot(cc: CombinedCommodity, rate_id: int, file: str) -> dict[str, Any] | None:
    """The spot-month charge of ``cc`` for ``rate_id`` (``span...spot``), one rate pair per period.

    ``sprd`` is the charge per unit of spot-month delta consumed by intra spreads, ``outr`` per unit
    left after them (0: no outright charge) [CC currency per delta]. Two ``spotRate`` on one month
    with different rates are an input error.
    """
    by_month: dict[int, tuple[float, float]] = {}
    for s in cc.spot_rates:
        if s.rate_id != rate_id:
            continue
        m = int(s.period[:6])
        pair = (s.spread_rate, s.outright_rate)
        if by_month.setdefault(m, pair) != pair:
            raise InputError(
                f"{cc.code} has two <spotRate> on month {m} with different rates",
                file=file,
                key_path=f"{cc.key_path}.spotRate" if cc.key_path else f"ccDef[{cc.code}].spotRate",
            )
    if not by_month:
        return None
    months = sorted(by_month)
    return {
        "months": months,
        "rate_spread": [by_month[m][0] for m in months],
        "rate_outright": [by_month[m][1] for m in months],
    }


def _rate_class(sf: SpanFile, cc: CombinedCommodity, rate_id: int) -> dict[str, Any]:
    """``rate_class`` (and ``initial_ratio`` when the file gives it) of ``cc`` for ``rate_id``.

    The rate class read is maintenance or initial per its ``pbRateDef`` ``isM`` (maintenance when
    the file defines no such class). An ``adjRate`` of ``cc`` that scales the class read into one
    of the other kind (``r`` = that class, ``baseR`` = the class read), or the other kind into it,
    sets the initial / maintenance ratio; an ``adjRate`` whose ``r`` is its own ``baseR`` scales
    nothing into another class and is not used (``marginsim span-file`` lists it).
    """
    defs = {d.rate_id: d for d in sf.pb_rate_defs}
    read = defs.get(rate_id)
    if read is None:
        return {}
    kind = "maintenance" if read.is_maintenance else "initial"
    out: dict[str, Any] = {"rate_class": kind}
    opposite = [d for d in sf.pb_rate_defs if d.is_maintenance != read.is_maintenance]
    # the class of the other kind for the same customer flag and account type, else any
    same = [d for d in opposite if (d.is_customer, d.account_type) == (read.is_customer, read.account_type)]
    other = [d.rate_id for d in (same or opposite)]
    for adj in cc.adj_rates:
        if adj.rate_id == adj.base_rate_id or not adj.value > 0:
            continue
        if adj.base_rate_id == rate_id and adj.rate_id in other:
            factor = adj.value  # other class = value x the class read
        elif adj.rate_id == rate_id and adj.base_rate_id in other:
            factor = 1.0 / adj.value  # the class read = value x other class
        else:
            continue
        # initial / maintenance
        out["initial_ratio"] = factor if read.is_maintenance else 1.0 / factor
        break
    return out


def _merge(base: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in user.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def inputs_from_span_file(sc: ScenarioFile) -> Inputs:
    """The data model of a scenario whose ``span.source`` names a clearing-house SPAN file.

    The file's contracts and parameters come first; the scenario's own ``market`` and
    ``contracts`` are added, and what the scenario's ``span`` section sets explicitly overrides
    the file's parameters (per combined commodity, key by key; ``inter_spreads`` as a whole).
    FX: the scenario's ``fx`` first, else the file's conversion rates.
    """
    assert sc.span is not None and sc.span.source is not None
    source = str(Path(sc.span.source))
    try:
        return _inputs_from_span_file(sc, load_span_file(source, scenario_file=sc.file))
    except InputError as e:
        if e.file != source:
            raise
        # a problem of the SPAN file: named with the scenario file and key that chose it
        raise InputError(str(e), file=sc.file, key_path="span.source") from e


def _inputs_from_span_file(sc: ScenarioFile, sf: SpanFile) -> Inputs:
    """:func:`inputs_from_span_file` on the file ``sf`` read."""
    assert sc.span is not None and sc.span.source is not None
    table = file_contract_table(sf)

    # FX: the file's conversion rates fill what the scenario does not give
    fx = dict(sc.fx)
    for cr in sf.conversion_rates:
        # factor: units of to_currency per unit of from_currency
        if cr.to_currency == sc.currency and cr.from_currency not in fx:
            fx[cr.from_currency] = cr.factor
        elif cr.from_currency == sc.currency and cr.to_currency not in fx and cr.factor > 0:
            fx[cr.to_currency] = 1.0 / cr.factor
    sc_fx = sc.model_copy(update={"fx": fx})
    sc_fx._file = sc.file

    # one underlying per combined commodity (file risk arrays do not need a market; a level is
    # still kept for grid shifts and user-defined contracts)
    groups, first = np.unique(table["group"].astype(str), return_index=True)
    level = np.where(
        np.isfinite(table["price"][first]) & (table["price"][first] > 0), table["price"][first], 1.0
    )
    market = build_market(
        sc_fx,
        names=list(groups) + list(sc.market),
        price=np.concatenate([level, [u.price for u in sc.market.values()]]),
        currency=list(table["currency"][first]) + [u.currency or sc.currency for u in sc.market.values()],
        vol=np.concatenate(
            [np.full(len(groups), np.nan), [np.nan if u.vol is None else u.vol for u in sc.market.values()]]
        ),
        rate=np.concatenate([np.zeros(len(groups)), [u.rate for u in sc.market.values()]]),
        dividend_yield=np.concatenate(
            [np.zeros(len(groups)), [u.dividend_yield for u in sc.market.values()]]
        ),
    )
    file_names = table["names"]
    user = list(sc.contracts.items())
    clash = set(sc.contracts) & set(file_names.tolist())
    if clash:
        raise InputError(
            f"contract {sorted(clash)[0]!r} is also defined by the clearing-house file",
            file=sc.file,
            key_path=("contracts", sorted(clash)[0]),
        )
    n_points = table["risk_array"].shape[1]

    def user_col(get: Callable[[Contract], float | None], fill: float = np.nan) -> np.ndarray:
        return np.array([fill if get(c) is None else get(c) for _, c in user], dtype=float)

    user_ra = np.full((len(user), n_points), np.nan)
    for i, (_, c) in enumerate(user):
        if c.risk_array is not None:
            user_ra[i] = c.risk_array
    contracts = contracts_from_arrays(
        sc_fx,
        market,
        names=np.concatenate([file_names, np.array([n for n, _ in user], dtype=object)]),
        type=np.concatenate([table["type"], np.array([c.type for _, c in user], dtype=object)]),
        underlying=np.concatenate([table["group"], np.array([c.underlying for _, c in user], dtype=object)]),
        multiplier=np.concatenate([table["multiplier"], user_col(lambda c: c.multiplier)]),
        expiry=np.concatenate(
            [
                table["expiry"],
                np.array(
                    [np.datetime64(c.expiry, "D") if c.expiry else np.datetime64("NaT") for _, c in user],
                    dtype="datetime64[D]",
                ),
            ]
        ),
        strike=np.concatenate([table["strike"], user_col(lambda c: c.strike)]),
        price=np.concatenate([table["price"], user_col(lambda c: c.price)]),
        vol=np.concatenate([np.where(table["vol"] > 0, table["vol"], np.nan), user_col(lambda c: c.vol)]),
        group=np.concatenate(
            [table["group"], np.array([c.group or c.underlying for _, c in user], dtype=object)]
        ),
        option_on=np.array(
            list(np.where(table["on_future"], "future", "spot")) + [c.option_on or "" for _, c in user],
            dtype=object,
        ),
        american=np.concatenate(
            [np.zeros(len(file_names), bool), [c.exercise == "american" for _, c in user]]
        ),
        premium_style=np.concatenate(
            [table["premium_style"], [c.premium_style == "premium" for _, c in user]]
        ),
        risk_array=np.concatenate([table["risk_array"], user_ra]),
        composite_delta=np.concatenate([table["composite_delta"], user_col(lambda c: c.composite_delta)]),
        month=np.concatenate([table["month"], np.zeros(len(user), np.int64)]),
        n_points=n_points,
    )
    # positions: canonical ids (vectorised lookup); an unknown id is an error naming the position
    positions = sc.position_table()
    idx = contract_indices(
        contracts,
        positions.contract,
        normalise=canonical_id,
        file=sc.file,
        error=positions.error,
        what=f": not in the clearing-house file {Path(sc.span.source).name} (ids are PFCODE:F:PERIOD, "
        "PFCODE:C|P:PERIOD:STRIKE, PFCODE:PHY; list them with `marginsim span-file FILE --contracts`) "
        "nor in `contracts`",
    )
    book = book_from_arrays(
        contracts,
        contract=idx,
        quantity=positions.quantity,
        account=positions.account,
    )

    file_params = span_params_from_file(sf)
    user_params = sc.span.model_dump(exclude_unset=True, exclude={"source"})
    merged = _merge(file_params, user_params)
    merged["source"] = sc.span.source
    try:
        params = SpanParams.model_validate(merged)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise InputError(
            f"the file's SPAN parameters (merged with the scenario's span section) do not validate: "
            f"span.{where}: {err['msg']}{more}",
            file=str(sf.path),
        ) from None
    return Inputs(
        scenario=sc_fx,
        book=book,
        contracts=contracts,
        market=market,
        span_params=params,
        span_file=sf,
        normalise_contract_id=canonical_id,
    )


def file_contract_ids(sf: SpanFile, groups: Sequence[str] | None = None) -> xr.Dataset:
    """A listing of the file's contracts (ids, kind, combined commodity, price, multiplier)."""
    t = file_contract_table(sf)
    sel = np.ones(len(t["names"]), bool) if not groups else np.isin(t["group"].astype(str), list(groups))
    return xr.Dataset(
        {k: ("contract", t[k][sel]) for k in ("type", "group", "price", "strike", "multiplier", "month")},
        coords={"contract": t["names"][sel]},
    )
