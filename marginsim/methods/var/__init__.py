"""Historical-simulation VaR margin (section ``var:``): the model of CME SPAN 2, Eurex Prisma and their peers.

Steps:

- :mod:`.scenarios`: from the scenario's ``history:``, overlapping ``holding_days``-day log returns
  ending on each of the last ``lookback_days`` dates (filtered: each daily return scaled by today's
  vol / its date's vol, EWMA or GARCH(1,1); over a backtest's dates, GARCH refitted every
  ``garch_refit_days`` on the returns up to then), the stress windows' and explicit scenarios, and the
  10-year floor's; scenario price = price now x exp(return), option vols x exp(vol return) where
  the history has vols;
- :mod:`.pnl`: every held contract revalued under every scenario (linear or full revaluation),
  summed per account (``(account, scenario, grid point)``);
- here: ``hvar`` = VaR (k-th largest loss) or ES (mean of the k largest), k = ceil(n (1 - c));
  ``stress`` = largest stress loss; ``core = x hvar + (1 - x) stress``; ``apc`` (EMIR Art. 28(1));
  liquidity and concentration add-ons on the net delta equivalent; ``maintenance`` = their sum,
  ``initial = initial_ratio x maintenance``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ...errors import InputError
from ...io.history import scenario_history
from ...kernels import pricing
from ...kernels.var import tail_count, tail_measure
from ...limits import FLOAT, Footprint, Sizes
from ...model import Inputs, flat_grid
from ...outputs import describe
from ...params.var import VarParams
from ...registry import MethodSpec
from ...scenario import ScenarioFile
from .outputs import COMPONENTS, OUTPUTS
from .pnl import BLOCK_ELEMENTS, BookMarket, account_pnl, book_market, net_delta
from .scenarios import ScenarioSet, build_scenarios

__all__ = ["VarParams", "OUTPUTS", "COMPONENTS", "SPEC", "var_margin", "check", "var_memory"]


def _history(inputs: Inputs) -> xr.Dataset:
    sc = inputs.scenario
    history = inputs.history
    if history is None:  # inputs built without marginsim.build_inputs
        history = scenario_history(sc, inputs.market["underlying"].values.tolist())
    if history is None:
        raise InputError(
            "the var method needs `history:` (daily closes per underlying)", file=sc.file, key_path="var"
        )
    return history


def _tail(loss: np.ndarray, k: int, measure: str, engine: pricing.Engine) -> tuple[np.ndarray, np.ndarray]:
    """Tail measure over axis 1 of ``(A, S, G)`` losses: ``(A, G)`` values and scenario indices."""
    value, idx = tail_measure(np.moveaxis(loss, 1, -1), k, measure, engine=engine)
    return value, idx


def _add_ons(
    inputs: Inputs,
    params: VarParams,
    bm: BookMarket,
    scen: ScenarioSet,
    n_accounts: int,
    engine: pricing.Engine,
) -> tuple[np.ndarray, np.ndarray]:
    """Liquidity and concentration add-ons ``(A, G)`` [reporting currency] (zeros when off)."""
    g = bm.grid_size
    zeros = np.zeros((n_accounts, g))
    if params.liquidity is None and params.concentration is None:
        return zeros, zeros.copy()
    unds = scen.underlyings
    n_u = len(unds)
    delta = net_delta(bm, n_accounts, n_u, engine)  # (A, U, G)
    market = inputs.market.sel(underlying=unds)
    price = flat_grid(market["price"], ["underlying"], bm.grid_dims, bm.grid_shape)  # (U, G)
    value = np.abs(delta) * (price * market["fx"].values[:, None])[None]  # notional (A, U, G)
    liquidity = zeros
    if params.liquidity is not None:
        spread = np.array([params.liquidity.get(u, 0.0) for u in unds])
        liquidity = (value * spread[None, :, None]).sum(axis=1)
    concentration = zeros.copy()
    if params.concentration is not None:
        cp = params.concentration
        adv_given = cp.adv or {}
        sc_market = inputs.scenario.market
        adv = np.array(
            [adv_given.get(u, getattr(sc_market.get(u), "adv", None) or np.inf) for u in unds], dtype=float
        )
        excess = np.maximum(np.abs(delta) - cp.threshold * adv[None, :, None], 0.0)  # (A, U, G)
        with np.errstate(invalid="ignore"):
            share = np.where(np.abs(delta) > 0, excess / np.where(np.abs(delta) > 0, np.abs(delta), 1.0), 0.0)
        concentration = (cp.rate * share * value).sum(axis=1)
    return liquidity, concentration


def var_margin(
    inputs: Inputs, params: VarParams | None = None, *, engine: pricing.Engine = "auto"
) -> xr.Dataset:
    """Historical-simulation VaR / ES margin of every account of the book.

    Parameters
    ----------
    inputs
        The data model (:func:`marginsim.build_inputs`), with :attr:`Inputs.history`.
    params
        Method parameters; default: the scenario's ``var`` section, else :class:`VarParams`'s defaults.
    engine
        Pricing engine: ``"numba"``, ``"numpy"`` or ``"auto"``.

    Returns
    -------
    xarray.Dataset
        Per account and grid point (the market's grid dims) [reporting currency]: the variables of
        :data:`OUTPUTS` (``maintenance``, ``initial``, the components :data:`COMPONENTS`,
        ``var_date``, ``stress_scenario``). Attrs: ``filter``, ``measure``, ``confidence``,
        ``holding_days``, ``scenarios`` (n), ``tail_count`` (k), ``first_scenario_date``,
        ``last_scenario_date`` (of the last valuation date), ``vol_moves`` (which underlyings' vols move with the history;
        ``"none: vols unchanged"`` without), ``history`` (the file).

    Raises
    ------
    InputError
        No ``history:``, a held contract without history, a history too short, a stress window
        outside the history. Over a ``date`` dim (a backtest: :func:`build_scenarios`), a date not
        in the history, with ``filter: garch`` a date with fewer than ``garch_min_days`` returns
        up to it (``var.garch_min_days``), a stress window ending after the first date.
    """
    inputs.require_in_memory("var_margin")
    sc = inputs.scenario
    params = params or sc.section("var") or VarParams()
    history = _history(inputs)
    valuation = inputs.market["date"].values if "date" in inputs.market.dims else None
    scen = build_scenarios(history, params, sc.file, valuation)
    bm = book_market(inputs, scen)
    n_a = inputs.book.sizes["account"]
    loss = account_pnl(bm, scen, n_a, engine)  # (A, S, G)
    np.negative(loss, out=loss)  # losses positive, in place
    n = scen.main.stop - scen.main.start
    k = tail_count(n, params.confidence)
    hvar_raw, idx = _tail(loss[:, scen.main], k, params.measure, engine)
    hvar = np.maximum(hvar_raw, 0.0)
    date = np.broadcast_to(bm.date, idx.shape)  # each grid point's valuation-date row
    var_date = np.where(hvar > 0, scen.labels(scen.main, np.maximum(idx, 0), date), "").astype(object)
    st = loss[:, scen.stress]
    if st.shape[1]:
        worst = st.max(axis=1)
        stress = np.maximum(worst, 0.0)
        _, s_idx = tail_measure(np.moveaxis(st, 1, -1), 1, "var", engine=engine)
        stress_name = np.where(stress > 0, scen.labels(scen.stress, s_idx, date), "").astype(object)
    else:
        stress = np.zeros_like(hvar)
        stress_name = np.full(hvar.shape, "", dtype=object)
    x = params.weight_x
    core = x * hvar + (1.0 - x) * stress
    if params.apc == "buffer":
        apc = params.apc_buffer * core
    elif params.apc == "stressed_weight":
        w_loss = loss[:, scen.windows]
        k_w = tail_count(w_loss.shape[1], params.confidence)
        stressed = np.maximum(_tail(w_loss, k_w, params.measure, engine)[0], 0.0)
        apc = x * params.apc_stressed_weight * (stressed - hvar)
    elif params.apc == "floor":
        f_loss = loss[:, scen.floor]
        k_f = tail_count(f_loss.shape[1], params.confidence)
        floor = np.maximum(_tail(f_loss, k_f, params.measure, engine)[0], 0.0)
        apc = x * np.maximum(floor - hvar, 0.0)
    else:
        apc = np.zeros_like(core)
    liquidity, concentration = _add_ons(inputs, params, bm, scen, n_a, engine)
    maintenance = np.maximum(core + apc + liquidity + concentration, 0.0)
    dims = ("account", *bm.grid_dims)
    shape = (n_a, *bm.grid_shape)

    def var(a: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
        return dims, a.reshape(shape)

    coords: dict = {"account": np.asarray(inputs.accounts, dtype=object)}
    for d in bm.grid_dims:
        src = inputs.market if d in inputs.market.coords else inputs.grid
        coords[d] = src[d].values
    main_dates = scen.label_text[scen.label_index[scen.main, -1]]  # the last valuation date's
    ds = xr.Dataset(
        {
            "maintenance": var(maintenance),
            "initial": var(params.initial_ratio * maintenance),
            "hvar": var(hvar),
            "stress": var(stress),
            "apc": var(apc),
            "liquidity": var(liquidity),
            "concentration": var(concentration),
            "var_date": var(var_date),
            "stress_scenario": var(stress_name),
        },
        coords=coords,
        attrs={
            "method": "var",
            "currency": sc.currency,
            "filter": params.filter,
            "measure": params.measure,
            "confidence": params.confidence,
            "holding_days": params.holding_days,
            "scenarios": n,
            "tail_count": k,
            "first_scenario_date": str(main_dates[0]) if n else "",
            "last_scenario_date": str(main_dates[-1]) if n else "",
            "vol_moves": (
                "history vol returns: " + ", ".join(scen.vol_underlyings)
                if scen.vol_underlyings
                else "none: vols unchanged"
            )
            + ("; explicit stress vol moves" if scen.vol is not None and not scen.vol_underlyings else ""),
            "history": str(history.attrs.get("file", "")),
        },
    )
    return describe(ds, OUTPUTS)


def check(sc: ScenarioFile) -> list[tuple[tuple[str | int, ...], str]]:
    """Checks of ``var:`` against the rest of the file: a history, known underlyings, a stress
    section where ``weight_x < 1`` or ``apc: stressed_weight`` needs one."""
    p: VarParams = sc.section("var")
    problems: list[tuple[tuple[str | int, ...], str]] = []
    if sc.section("history") is None:
        problems.append((("var",), "the var method needs `history:` (daily closes per underlying)"))
    span = sc.section("span")
    known = None if span is not None and getattr(span, "source", None) is not None else set(sc.market)
    windows = p.stress.windows if p.stress is not None else []
    if p.weight_x < 1 and p.stress is None:
        problems.append(
            (("var", "weight_x"), "weight_x below 1 gives weight to a stress component: add var.stress")
        )
    if p.apc == "stressed_weight" and not windows:
        problems.append(
            (("var", "apc"), "apc: stressed_weight needs var.stress.windows (the stressed observations)")
        )
    if known is not None:
        named: list[tuple[tuple[str | int, ...], str]] = []
        for i, s in enumerate(p.stress.scenarios if p.stress is not None else []):
            named += [(("var", "stress", "scenarios", i, "moves", u), u) for u in s.moves]
            named += [(("var", "stress", "scenarios", i, "vol_moves", u), u) for u in s.vol_moves]
        named += [(("var", "liquidity", u), u) for u in p.liquidity or {}]
        if p.concentration is not None:
            named += [(("var", "concentration", "adv", u), u) for u in p.concentration.adv or {}]
        problems += [(path, f"unknown underlying {u!r}") for path, u in named if u not in known]
    return problems


def _scenario_columns(p: VarParams) -> int:
    """An upper bound of the scenario columns before the history is read."""
    n = p.lookback_days + (p.apc_floor_days if p.apc == "floor" else 0)
    if p.stress is not None:
        n += len(p.stress.scenarios)
        n += sum(((w.to - w.start).days + 1) for w in p.stress.windows)
    return n


def var_memory(s: Sizes, detail: bool) -> Footprint:
    """VaR: the P&L matrix (accounts x scenario columns x grid points) and its losses and tail
    partitions (about three copies), a block of contract revaluations (about eight arrays of
    :data:`~.pnl.BLOCK_ELEMENTS`), the net deltas (accounts x underlyings) and the result (nine
    arrays per account and grid point). Every position of the book counts."""
    g = s.points()
    p = s.scenario.section("var") if s.scenario is not None else None
    cols = _scenario_columns(p or VarParams())
    result = FLOAT * g * 9 * s.accounts
    work = FLOAT * (3 * s.accounts * cols * g + 8 * min(BLOCK_ELEMENTS, max(s.contracts, 1) * cols * g))
    work += FLOAT * g * 3 * s.accounts * s.underlyings
    return Footprint(result + work + FLOAT * 4 * s.positions, result)


#: The method's registration (:func:`marginsim.registry.register_method` in :mod:`marginsim.methods`).
SPEC = MethodSpec(
    "var",
    var_margin,
    VarParams,
    outputs=OUTPUTS,
    check=check,
    memory=var_memory,
    # over a backtest's dates, the scenario count is the first date's: a chunk of later dates
    # would take more scenarios
    unsplit_dims=frozenset({"date"}),
)
