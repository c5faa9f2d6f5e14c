"""Account-layer kernels: pure numpy (and one small scipy LP) on arrays, no xarray, no I/O.

* risk ratios and the risk state (normal / margin call / forced liquidation);
* margin-call deadlines from call times and a business-day calendar;
* tiered interest;
* the ready-market test of foreign stocks;
* the forced conversion / cross-group transfer planner and its replay;
* the greedy step of the liquidation plan.

Every policy number (cut-off times, tiers, thresholds) is an argument; none is a literal here.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "NORMAL",
    "MARGIN_CALL",
    "FORCED_LIQUIDATION",
    "STATE_NAMES",
    "risk_ratio",
    "risk_state",
    "call_start",
    "call_deadline",
    "tiered_interest",
    "ready_market",
    "Movement",
    "Plan",
    "replay",
    "shortfalls",
    "plan_movements",
    "greedy_close",
]

#: State codes (``state`` variable); higher is worse, so that "state is monotone in equity" reads
#: as "state does not increase when equity increases".
NORMAL, MARGIN_CALL, FORCED_LIQUIDATION = 0, 1, 2
STATE_NAMES = ("normal", "margin_call", "forced_liquidation")


def risk_ratio(requirement: np.ndarray, equity: np.ndarray) -> np.ndarray:
    """Requirement / equity [fraction, 1.0 = 100 %].

    Parameters
    ----------
    requirement
        Initial (general risk ratio) or maintenance margin (maintenance risk ratio) [currency], >= 0.
    equity
        Client equity [same currency].

    Returns
    -------
    numpy.ndarray
        ``requirement / equity`` where equity > 0; ``inf`` where equity <= 0 and a requirement
        is due; 0 where nothing is required.
    """
    req = np.asarray(requirement, dtype=float)
    eq = np.asarray(equity, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = np.where(eq > 0, req / np.where(eq > 0, eq, 1.0), np.inf)
    return np.where(req > 0, ratio, 0.0)


def risk_state(equity: np.ndarray, initial: np.ndarray, maintenance: np.ndarray) -> np.ndarray:
    """Risk state code per point: :data:`NORMAL`, :data:`MARGIN_CALL` or :data:`FORCED_LIQUIDATION`.

    The broker's rule is on the ratios: forced liquidation when the maintenance risk ratio is
    >= 100 %, margin call when the general risk ratio is >= 100 % (and the maintenance ratio
    below), normal otherwise. On the boundary (equity exactly at a margin level) the ratio is
    100 %, so the worse state applies.

    Parameters
    ----------
    equity, initial, maintenance
        Broadcastable arrays [one currency].

    Returns
    -------
    numpy.ndarray
        int8 state codes.
    """
    general = risk_ratio(initial, equity)
    maint = risk_ratio(maintenance, equity)
    state = np.where(maint >= 1.0, FORCED_LIQUIDATION, np.where(general >= 1.0, MARGIN_CALL, NORMAL))
    return state.astype(np.int8)


def call_start(state: np.ndarray, axis: int = -1) -> np.ndarray:
    """Index along ``axis`` (the path's steps) of the step that raised the call outstanding at each step.

    A call stays outstanding while the state is not normal (margin call or forced liquidation);
    it is met when the state is back to normal. Returns -1 where the state is normal.
    """
    s = np.moveaxis(np.asarray(state), axis, -1)
    n = s.shape[-1]
    idx = np.arange(n)
    active = s != NORMAL
    prev_active = np.concatenate([np.zeros(s.shape[:-1] + (1,), dtype=bool), active[..., :-1]], axis=-1)
    starts = np.where(active & ~prev_active, idx, -1)
    start = np.maximum.accumulate(starts, axis=-1)
    start = np.where(active, start, -1)
    return np.moveaxis(start, -1, axis)


def call_deadline(
    call_time: np.ndarray,
    *,
    cutoff_minutes: float,
    deadline_minutes: float,
    holidays: np.ndarray,
    weekmask: str = "1111100",
) -> np.ndarray:
    """Deadline of a margin call raised at ``call_time`` (local time).

    A call raised after 00:00 and at or before the cut-off (``cutoff_minutes`` after midnight,
    e.g. 12:00) is due at ``deadline_minutes`` (e.g. 16:00) the same business day; one raised
    after the cut-off and up to 00:00 (midnight belongs to the evening before) is due at that
    time the next business day. A "same day" that is not a business day rolls forward to the
    next business day.

    Parameters
    ----------
    call_time
        ``datetime64`` local times (NaT: no call).
    cutoff_minutes, deadline_minutes
        Minutes after midnight [min].
    holidays
        ``datetime64[D]`` non-business days besides the weekend.
    weekmask
        Business days of the week, Monday first (numpy ``busday`` convention).

    Returns
    -------
    numpy.ndarray
        ``datetime64[s]`` deadlines (NaT where ``call_time`` is NaT).
    """
    t = np.asarray(call_time, dtype="datetime64[s]")
    nat = np.isnat(t)
    safe = np.where(nat, np.datetime64("2000-01-03T10:00:00", "s"), t)
    # midnight belongs to the evening window of the day before
    shifted = safe - np.timedelta64(1, "s")
    day = shifted.astype("datetime64[D]")
    minutes = (shifted - day).astype("timedelta64[s]").astype(np.int64) / 60.0
    morning = minutes < cutoff_minutes  # (00:00, cutoff]: the 1 s shift makes the cut-off inclusive
    hol = np.asarray(holidays, dtype="datetime64[D]")
    same = np.busday_offset(day, 0, roll="forward", holidays=hol, weekmask=weekmask)
    nxt = np.busday_offset(day, 1, roll="backward", holidays=hol, weekmask=weekmask)
    due_day = np.where(morning, same, nxt)
    due = due_day.astype("datetime64[s]") + np.timedelta64(int(round(deadline_minutes * 60)), "s")
    return np.where(nat, np.datetime64("NaT", "s"), due)


def tiered_interest(amount_usd: np.ndarray, bounds_usd: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Interest per year of marginal tiers, in USD-equivalent.

    Parameters
    ----------
    amount_usd
        Balance [USD equivalent], >= 0, shape ``(...)``.
    bounds_usd
        Lower bound of each tier [USD], increasing, first 0, shape ``(T,)``.
    rates
        Rate of each tier [decimal per year], shape ``(..., T)`` (broadcast against ``amount``).

    Returns
    -------
    numpy.ndarray
        Sum over tiers of (part of the amount inside the tier) x rate [USD per year].
    """
    a = np.asarray(amount_usd, dtype=float)[..., None]
    lo = np.asarray(bounds_usd, dtype=float)
    hi = np.append(lo[1:], np.inf)
    part = np.clip(a - lo, 0.0, hi - lo)
    return (part * np.asarray(rates, dtype=float)).sum(axis=-1)


def ready_market(
    listed_days: np.ndarray,
    recognised_country: np.ndarray,
    electronic_quotes: np.ndarray,
    median_volume_shares: np.ndarray,
    median_volume_usd: np.ndarray,
    min_free_float_usd_seen: np.ndarray,
    enough_free_float_days: np.ndarray,
    in_grace: np.ndarray,
    *,
    min_listed_days: float,
    min_volume_shares: float,
    min_volume_usd: float,
    min_free_float_usd: float,
) -> dict[str, np.ndarray]:
    """The four ready-market conditions of a foreign stock, and its loan-value eligibility.

    Parameters
    ----------
    listed_days
        Calendar days listed on the foreign exchange [days].
    recognised_country
        The exchange's country is recognised by the FTSE World Index.
    electronic_quotes
        Daily bid, ask and last prices available electronically.
    median_volume_shares, median_volume_usd
        Median daily volume over the last 20 trading days [shares], [USD].
    min_free_float_usd_seen
        Lowest free-float capitalisation over the last trading days given [USD].
    enough_free_float_days
        The data covers the whole free-float window (else condition 4 fails).
    in_grace
        The stock stopped meeting the conditions at most the grace period ago.
    min_listed_days, min_volume_shares, min_volume_usd, min_free_float_usd
        Thresholds [days], [shares], [USD], [USD].

    Returns
    -------
    dict
        ``listed``, ``quotes``, ``volume``, ``free_float``, ``meets_all``, ``ready_market``
        (meets all, or within the grace period): boolean arrays.
    """
    listed = (np.asarray(listed_days) >= min_listed_days) & np.asarray(recognised_country, dtype=bool)
    quotes = np.asarray(electronic_quotes, dtype=bool)
    volume = (np.asarray(median_volume_shares) >= min_volume_shares) | (
        np.asarray(median_volume_usd) >= min_volume_usd
    )
    free_float = (np.asarray(min_free_float_usd_seen) >= min_free_float_usd) & np.asarray(
        enough_free_float_days, dtype=bool
    )
    meets = listed & quotes & volume & free_float
    return {
        "listed": listed,
        "quotes": quotes,
        "volume": volume,
        "free_float": free_float,
        "meets_all": meets,
        "ready_market": meets | np.asarray(in_grace, dtype=bool),
    }


# -- forced conversion / cross-group transfer planner ---------------------------------------------


@dataclass(frozen=True)
class Movement:
    """One movement of a plan (see :class:`marginsim.params.account.Movement`).

    ``amount`` of ``currency`` leaves ``from_group``; ``to_amount`` of ``to_currency`` arrives in
    ``to_group``; ``rate`` = units of ``to_currency`` per unit of ``currency`` (1 for transfers).
    Groups and currencies are indices into the planner's axes.
    """

    kind: str
    amount: float
    currency: int
    from_group: int
    to_group: int
    to_currency: int
    rate: float

    @property
    def to_amount(self) -> float:
        return self.amount * self.rate


@dataclass
class Plan:
    """A forced conversion / transfer plan of one account.

    Attributes
    ----------
    movements
        Transfers first, then conversions within a group, then across groups.
    rule
        Which rule of the order of preference chose it: ``none`` (nothing to do),
        ``transfers`` (rule 2), ``conversions`` (rule 3), ``transfers_and_conversions`` (rule 4).
    currencies_converted
        Indices of the currencies sold in conversions.
    shortfall_before, shortfall_after
        Sum of the currency-test and group-test shortfalls before and after [base currency].
    complete
        Every test met after the plan.
    """

    movements: list[Movement] = field(default_factory=list)
    rule: str = "none"
    currencies_converted: tuple[int, ...] = ()
    shortfall_before: float = 0.0
    shortfall_after: float = 0.0
    complete: bool = True


def replay(balance: np.ndarray, movements: list[Movement]) -> np.ndarray:
    """Balances ``(G, C)`` [currency units] after the movements, applied in order."""
    b = np.array(balance, dtype=float)
    for m in movements:
        b[m.from_group, m.currency] -= m.amount
        b[m.to_group, m.to_currency] += m.amount * m.rate
    return b


def shortfalls(
    balance: np.ndarray, required: np.ndarray, group_required: np.ndarray, usd: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Currency-test shortfalls ``(G, C)`` [currency units] and group-test shortfalls ``(G,)`` [base].

    Parameters
    ----------
    balance
        Balances by group and currency [currency units].
    required
        Initial margin required in each currency by the exchange or upstream broker [currency units].
    group_required
        The broker's initial margin of each group [base currency].
    usd
        Value of one unit of each currency in the base currency.
    """
    b = np.asarray(balance, dtype=float)
    ccy = np.maximum(np.asarray(required, dtype=float) - b, 0.0)
    grp = np.maximum(np.asarray(group_required, dtype=float) - (b * usd).sum(axis=1), 0.0)
    return ccy, grp


def _solve(balance, required, group_required, usd, pairs, cost, ccy_weight, slack_cap=None):
    """LP over the movement amounts of ``pairs`` (in units of the currency sold).

    Phase 1 (``slack_cap`` None): minimise the weighted shortfall. Phase 2: minimise ``cost``
    subject to the weighted shortfall <= ``slack_cap``. Returns (amounts, weighted shortfall).
    """
    G, C = balance.shape
    n_x = len(pairs)
    n_s1, n_s2 = G * C, G
    n = n_x + n_s1 + n_s2
    surplus = np.maximum(balance - required, 0.0)
    # inflow matrix: effect of each movement on each (g, c) cell
    A_cell = np.zeros((G * C, n_x))
    for j, (_, g, c, h, d) in enumerate(pairs):
        A_cell[g * C + c, j] -= 1.0
        A_cell[h * C + d, j] += usd[c] / usd[d]
    rows, rhs = [], []
    # currency tests: balance + inflow + s1 >= required  ->  -inflow - s1 <= balance - required
    blk = np.zeros((G * C, n))
    blk[:, :n_x] = -A_cell
    blk[:, n_x : n_x + n_s1] = -np.eye(G * C)
    rows.append(blk)
    rhs.append((balance - required).reshape(-1))
    # group tests, in base currency
    A_grp = (A_cell * np.tile(usd, G)[:, None]).reshape(G, C, n_x).sum(axis=1)
    blk = np.zeros((G, n))
    blk[:, :n_x] = -A_grp
    blk[:, n_x + n_s1 :] = -np.eye(G)
    rows.append(blk)
    rhs.append((balance * usd).sum(axis=1) - group_required)
    # a cell gives only its surplus over its own currency requirement
    out = np.zeros((G * C, n))
    for j, (_, g, c, _h, _d) in enumerate(pairs):
        out[g * C + c, j] = 1.0
    rows.append(out)
    rhs.append(surplus.reshape(-1))
    slack_obj = np.concatenate([np.zeros(n_x), ccy_weight * np.tile(usd, G), np.ones(G)])
    if slack_cap is None:
        c_vec = slack_obj
    else:
        rows.append(slack_obj[None, :])
        rhs.append(np.array([slack_cap]))
        c_vec = np.concatenate([cost, np.zeros(n_s1 + n_s2)])
    from scipy.optimize import linprog  # imported on first use (about 0.3 s): only the planner needs it

    res = linprog(
        c_vec,
        A_ub=np.vstack(rows),
        b_ub=np.concatenate(rhs),
        bounds=[(0, None)] * n,
        method="highs",
        options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10},
    )
    if res.status != 0:
        if slack_cap is not None:  # the shortfall cap is tight: the caller relaxes it
            return None, np.inf
        raise RuntimeError(f"conversion planner LP failed: {res.message}")  # pragma: no cover
    x = res.x
    return x[:n_x], float(slack_obj @ x)


def _pairs(G: int, C: int, *, transfers: bool, conversions: bool, sources=None, cross: bool = True):
    out = []
    if transfers:
        for c in range(C):
            for g in range(G):
                for h in range(G):
                    if g != h:
                        out.append(("transfer", g, c, h, c))
    if conversions:
        for c in range(C) if sources is None else sources:
            for d in range(C):
                if d == c:
                    continue
                for g in range(G):
                    for h in range(G):
                        if h == g or cross:
                            out.append(("conversion", g, c, h, d))
    return out


def plan_movements(
    balance: np.ndarray,
    required: np.ndarray,
    group_required: np.ndarray,
    usd: np.ndarray,
    *,
    currency_weight: float = 1000.0,
    rel_tol: float = 1e-9,
) -> Plan:
    """The broker's forced conversion / cross-group transfer plan of one account.

    Tests: every (group, currency) cell holds at least ``required`` (conversion test) and every
    group's base value is at least ``group_required`` (transfer test). A cell gives only its
    surplus over its own requirement. When the tests cannot all be met (the account's total base
    is short), the plan minimises the shortfall, currency tests first (settlement duty), weighted
    ``currency_weight`` : 1 against group tests; "suffices" below means "reaches that minimum".

    Order of preference (``spec/account.md`` section 3; the client's own instructions, rule 1, are
    applied by the caller before planning):

    2. transfers only, if they suffice (least amount moved);
    3. conversions only: the fewest currencies sold first; for a number of currencies, within-group
       conversions only before conversions across groups; among equals, the least amount moved;
    4. both: transfers are cheaper than conversions in the amount minimised, the currencies sold
       chosen as in rule 3.

    Parameters
    ----------
    balance, required
        ``(G, C)`` [currency units].
    group_required
        ``(G,)`` [base currency].
    usd
        ``(C,)`` value of one unit of each currency in the base currency; rates of conversions are
        ``usd[c] / usd[d]``.

    Returns
    -------
    Plan

    Notes
    -----
    Each candidate is one linear programme (HiGHS) in ``2 G^2 C^2`` variables at most; the search
    over the sets of currencies sold solves at most ``2 (2^k - 1)`` of them, ``k`` the currencies
    with a surplus, and stops at the first size that suffices. With 3 groups and a handful of
    currencies this is milliseconds per account.
    """
    b = np.asarray(balance, dtype=float)
    r = np.asarray(required, dtype=float)
    q = np.asarray(group_required, dtype=float)
    u = np.asarray(usd, dtype=float)
    G, C = b.shape
    s_ccy, s_grp = shortfalls(b, r, q, u)
    before = float((s_ccy * u).sum() + s_grp.sum())
    # the LPs run on amounts divided by `scale` (values of order 1: solver tolerances are relative)
    scale = max(float(np.abs(b * u).sum() + np.abs(r * u).sum() + np.abs(q).sum()), 1e-300)
    bs, rs, qs = b / scale, r / scale, q / scale
    weighted_before = float(currency_weight * (s_ccy * u).sum() + s_grp.sum()) / scale
    tol = rel_tol
    if weighted_before <= tol:
        return Plan(shortfall_before=before)
    # buying a currency that a cell of the target group is short of is preferred (ties: fewer moves)
    short_cell = (s_ccy > 0).reshape(-1)

    def run(pairs, cost):
        if not pairs:
            return None, weighted_before
        x1, best = _solve(bs, rs, qs, u, pairs, cost, currency_weight)
        for rel, absolute in ((1e-12, 1e-13), (1e-9, 1e-10), (1e-6, 1e-7)):
            x, _ = _solve(bs, rs, qs, u, pairs, cost, currency_weight, slack_cap=best * (1 + rel) + absolute)
            if x is not None:
                return x * scale, best
        return x1 * scale, best  # the least-shortfall solution, amounts not minimised

    def amounts_cost(pairs, conv_weight=2.0, cross_weight=3.0):
        w = [1.0 if k == "transfer" else (conv_weight if g == h else cross_weight) for k, g, _, h, _ in pairs]
        w = [wi * (1.0 if short_cell[h * C + d] else 1.001) for wi, (_, _, _, h, d) in zip(w, pairs)]
        return np.array([wi * u[c] for wi, (_, _, c, _, _) in zip(w, pairs)])

    all_pairs = _pairs(G, C, transfers=True, conversions=True)
    _, target = run(all_pairs, amounts_cost(all_pairs))

    def finish(pairs, x, rule):
        moves = []
        for (kind, g, c, h, d), amt in zip(pairs, x):
            if amt * u[c] > rel_tol * scale:
                moves.append(
                    Movement(kind, float(amt), c, g, h, d, 1.0 if kind == "transfer" else u[c] / u[d])
                )
        order = {"transfer": 0}
        moves.sort(key=lambda m: (order.get(m.kind, 1 if m.from_group == m.to_group else 2), m.currency))
        after_b = replay(b, moves)
        a_ccy, a_grp = shortfalls(after_b, r, q, u)
        after = float((a_ccy * u).sum() + a_grp.sum())
        sold = tuple(sorted({m.currency for m in moves if m.kind == "conversion"}))
        return Plan(moves, rule, sold, before, after, bool(after <= 1e-7 * scale))

    # rule 2: transfers only
    pairs = _pairs(G, C, transfers=True, conversions=False)
    x, best = run(pairs, amounts_cost(pairs))
    if x is not None and best <= target + tol:
        return finish(pairs, x, "transfers")

    # currencies that can be sold: a surplus over the cell's own requirement somewhere
    sellable = [c for c in range(C) if (np.maximum(b[:, c] - r[:, c], 0.0) > 0).any()]

    def search(transfers: bool):
        for k in range(1, len(sellable) + 1):
            for cross in (False, True):
                found = None
                for subset in itertools.combinations(sellable, k):
                    pairs = _pairs(G, C, transfers=transfers, conversions=True, sources=subset, cross=cross)
                    cost = amounts_cost(pairs)
                    x, best = run(pairs, cost)
                    if x is not None and best <= target + tol:
                        total = float(cost @ x)
                        if found is None or total < found[0] * (1 - 1e-9):
                            found = (total, pairs, x)
                if found is not None:
                    return found
        return None

    # rule 3: conversions only
    found = search(transfers=False)
    if found is not None:
        return finish(found[1], found[2], "conversions")
    # rule 4: both
    found = search(transfers=True)
    if found is not None:
        return finish(found[1], found[2], "transfers_and_conversions")
    return finish(all_pairs, run(all_pairs, amounts_cost(all_pairs))[0], "transfers_and_conversions")


# -- liquidation ------------------------------------------------------------------------------------


def greedy_close(segment: np.ndarray, gain: np.ndarray, size: np.ndarray, need: np.ndarray) -> np.ndarray:
    """Contracts to close per candidate so that the estimated gains cover each segment's need.

    Candidates must be sorted by segment (account) and, within it, by decreasing gain per
    contract. In each segment, candidates are closed in order, whole, until the next one would
    cover the remaining need: that one is closed partly (rounded up to whole contracts); later
    ones are not touched. Vectorised over segments (no Python loop).

    Parameters
    ----------
    segment
        Segment (account) index of each candidate, non-decreasing.
    gain
        Estimated improvement of available funds per contract closed [base currency], > 0.
    size
        Contracts held (absolute quantity) per candidate.
    need
        Shortfall of available funds per segment [base currency], >= 0.

    Returns
    -------
    numpy.ndarray
        Contracts to close per candidate (0 ... size), float of whole numbers.
    """
    seg = np.asarray(segment, dtype=np.int64)
    g = np.asarray(gain, dtype=float)
    n = np.asarray(size, dtype=float)
    if seg.size == 0:
        return np.zeros(0)
    full = g * n
    csum = np.cumsum(full)
    first = np.r_[True, seg[1:] != seg[:-1]]
    seg_start = np.maximum.accumulate(np.where(first, np.arange(seg.size), 0))
    offset = np.where(seg_start > 0, csum[np.maximum(seg_start - 1, 0)], 0.0)
    cum = csum - offset  # within-segment cumulative gain, this candidate included
    prev = cum - full
    remaining = np.asarray(need, dtype=float)[seg] - prev
    part = np.ceil(np.maximum(remaining, 0.0) / g - 1e-12)
    return np.where(remaining <= 0, 0.0, np.minimum(part, n))
