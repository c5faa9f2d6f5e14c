"""The strategy-based rules: each position alone, and every strategy two or three positions can form.

Everything is an array over positions (``P``, netted per account and contract) or candidate
strategies, by the grid points (``G``, flattened): nothing loops over positions or accounts.
Amounts are in the reporting currency, per unit of the position (a share, an option contract) or
per unit of the strategy (one option contract with its shares).

Convention (``initial`` and ``maintenance`` as the rules state them; ``opening_deposit`` = initial
minus the proceeds of the short options):

- long stock: ``long_initial`` (Reg T 50 %) / ``long_maintenance`` (FINRA 25 %) of the value;
  without loan value (:attr:`~marginsim.params.strategy.StockRates.no_loan_value`) 100 %;
- short stock: maintenance 30 % of the value or USD 5 a share (below USD 5: 100 % or USD 2.50
  a share); initial the Reg T 150 % of the proceeds net of the proceeds (50 %), never below the
  maintenance;
- long option: its value (paid in full), ``long_dated_requirement`` of it past ``long_dated_years``;
- short uncovered option: proceeds + max(20 % (15 % broad index) of the underlying value - the
  out-of-the-money amount, 10 % of the underlying value (call) or of the exercise price (put));
- strategies (:data:`RULES`): see :func:`candidates`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...params.strategy import StrategyParams

__all__ = ["RULES", "STOCK", "CALL", "PUT", "Book", "Candidates", "standalone", "candidates", "SINGLE_RULES"]

#: Kinds of position.
STOCK, CALL, PUT = 0, 1, 2

#: Rules of one position alone, by code (``kind * 2 + is_short``).
SINGLE_RULES = ("long_stock", "short_stock", "long_call", "uncovered_call", "long_put", "uncovered_put")

#: Strategy rules, by code (the candidates' ``rule``).
RULES = (
    "debit_call_spread",
    "credit_call_spread",
    "debit_put_spread",
    "credit_put_spread",
    "short_straddle",
    "short_strangle",
    "covered_call",
    "covered_put",
    "protective_put",
    "protective_call",
    "collar",
    "conversion",
    "reversal",
)
_R = {name: i for i, name in enumerate(RULES)}


@dataclass
class Book:
    """The method's positions, netted per (account, contract), with their market per grid point.

    Attributes
    ----------
    rank
        Rank of the account's name among the book's, ``(P,)``: strategies are ordered by it, so
        that the result does not depend on the order of the book's rows or its chunks.
    account, contract, underlying
        Account index, contract index (into the inputs' contracts) and underlying index, ``(P,)``.
    quantity
        Signed quantity [shares or contracts], ``(P,)``.
    kind
        :data:`STOCK`, :data:`CALL` or :data:`PUT`, ``(P,)``.
    multiplier, strike, expiry_days, t
        Per position ``(P,)`` (strike NaN for stocks; expiry in days from as-of).
    broad
        Broad-based index underlying, ``(P,)``.
    no_loan
        Stock without loan value, ``(P,)``.
    level, premium, fx
        Underlying price [price units], option premium [price units] and FX [reporting currency per
        unit], ``(P, G)``.
    """

    rank: np.ndarray
    account: np.ndarray
    contract: np.ndarray
    underlying: np.ndarray
    quantity: np.ndarray
    kind: np.ndarray
    multiplier: np.ndarray
    strike: np.ndarray
    expiry_days: np.ndarray
    t: np.ndarray
    broad: np.ndarray
    no_loan: np.ndarray
    level: np.ndarray
    premium: np.ndarray
    fx: np.ndarray

    @property
    def size(self) -> int:
        return int(self.account.size)


@dataclass
class Standalone:
    """Per-unit requirements of each position alone, ``(P, G)`` [reporting currency per unit]."""

    initial: np.ndarray
    maintenance: np.ndarray
    proceeds: np.ndarray  # short options: premium x multiplier x FX per contract; 0 otherwise
    value: np.ndarray  # market value per unit (signed by the position's side), for equity
    rule: np.ndarray  # SINGLE_RULES code, (P,)


def _uncovered(b: Book, p: StrategyParams, sel: np.ndarray | slice = slice(None)) -> np.ndarray:
    """Short uncovered option requirement per contract, proceeds included [reporting currency], ``(n, G)``."""
    o = p.option
    s, k = b.level[sel], b.strike[sel][:, None]
    call = (b.kind[sel] == CALL)[:, None]
    rate = np.where(b.broad[sel], o.uncovered_broad_index, o.uncovered)[:, None]
    otm = np.where(call, np.maximum(k - s, 0.0), np.maximum(s - k, 0.0))
    floor = o.uncovered_minimum * np.where(call, s, k)
    per = b.premium[sel] + np.maximum(rate * s - otm, floor)
    return per * (b.multiplier[sel] * 1.0)[:, None] * b.fx[sel]


def standalone(b: Book, p: StrategyParams) -> Standalone:
    """Requirements of each position margined alone (no strategy), per unit."""
    st, o = p.stock, p.option
    long = b.quantity > 0
    stock = b.kind == STOCK
    mfx = b.multiplier[:, None] * b.fx
    s = b.level
    # stocks
    long_i = np.where(b.no_loan[:, None], 1.0, st.long_initial) * s
    long_m = np.where(b.no_loan[:, None], 1.0, st.long_maintenance) * s
    low = s < st.low_price
    short_m = np.where(
        low,
        np.maximum(st.short_low_price_maintenance * s, st.short_low_price_per_share),
        np.maximum(st.short_maintenance * s, st.short_per_share),
    )
    short_i = np.maximum((st.short_initial - 1.0) * s, short_m)
    stock_i = np.where(long[:, None], long_i, short_i) * mfx
    stock_m = np.where(long[:, None], long_m, short_m) * mfx
    # options
    prem = b.premium * mfx
    dated = np.where(b.t > o.long_dated_years, o.long_dated_requirement, 1.0)[:, None]
    naked = _uncovered(b, p)
    opt = np.where(long[:, None], prem * dated, naked)
    initial = np.where(stock[:, None], stock_i, opt)
    maintenance = np.where(stock[:, None], stock_m, opt)
    proceeds = np.where((~stock & ~long)[:, None], prem, 0.0)
    value = np.where(stock[:, None], s * mfx, prem) * np.where(long, 1.0, -1.0)[:, None]
    rule = (b.kind * 2 + (~long)).astype(np.int64)
    return Standalone(initial, maintenance, proceeds, value, rule)


@dataclass
class Candidates:
    """Strategies the positions can form (``N`` candidates, up to three legs each).

    Attributes
    ----------
    legs
        Position index of each leg, ``(N, 3)``; -1 for no leg.
    coef
        Units of each leg per unit of the strategy, ``(N, 3)`` (1 for options; shares per option
        contract for the stock leg).
    rule
        Index into :data:`RULES`, ``(N,)``.
    initial, maintenance
        Requirement of one unit of the strategy, ``(N, G)`` [reporting currency].
    """

    legs: np.ndarray
    coef: np.ndarray
    rule: np.ndarray
    initial: np.ndarray
    maintenance: np.ndarray

    @property
    def size(self) -> int:
        return int(self.rule.size)

    def saving(self, total: np.ndarray, alone: np.ndarray) -> np.ndarray:
        """``total`` (one unit of each strategy, (N, G)) minus its legs alone (``alone``: per unit,
        (P, G)): negative where the strategy saves, ``(N, G)``."""
        out = total.copy()
        for leg in range(3):  # three leg slots, not positions
            has = self.legs[:, leg] >= 0
            idx = np.where(has, self.legs[:, leg], 0)
            out -= np.where(has, self.coef[:, leg], 0.0)[:, None] * alone[idx]
        return out


def _pairs(group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered pair (i, j), i != j, of positions with the same ``group`` code (positions
    sorted by ``group``), generated without a loop."""
    n = group.size
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    start = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    size = np.diff(np.r_[start, n])
    first = np.repeat(start, size)  # first position of each position's group
    count = np.repeat(size, size)  # its group's size
    i = np.repeat(np.arange(n), count)
    offset = np.arange(i.size) - np.repeat(np.cumsum(count) - count, count)
    j = np.repeat(first, count) + offset
    keep = i != j
    return i[keep], j[keep]


def candidates(b: Book, p: StrategyParams, alone: Standalone) -> Candidates:
    """Every strategy two positions (or a stock and two options) of one account and underlying form.

    - **spreads** (long ``i``, short ``j``; both calls or both puts; same multiplier; the long
      expiring no earlier than the short): the long paid in full plus the amount by which the
      short's exercise price exceeds the long's (puts; calls: falls below), at least 0: debit
      spreads cost the net debit, credit spreads the maximum loss (in the opening deposit).
      Butterflies, condors and boxes are margined as the spreads they decompose into;
    - **short straddle / strangle** (short call ``i``, short put ``j``): the larger side's uncovered
      requirement plus the other side's proceeds;
    - **covered call / put** (long stock and short call / short stock and short put): the stock's
      own requirement; nothing on the option (its proceeds still count in the deposit);
    - **protective put / call** (long stock and long put / short stock and long call): initial =
      the stock's initial + the option paid in full; maintenance = the option + the lesser of the
      stock's maintenance and ``protective_exercise`` x the exercise price plus the option's
      out-of-the-money amount (FINRA 4210);
    - **collar / conversion** (long stock, long put, short call): as a protective put with a
      covered call, the stock's maintenance term the lesser of the put's and 25 % of the call's
      exercise price; **reversal** (short stock, short put, long call): as a protective call with
      a covered put.
    """
    n_g = b.level.shape[1]
    order = np.lexsort((b.underlying, b.rank))
    code = b.rank[order] * (int(b.underlying.max(initial=0)) + 1) + b.underlying[order]
    ii, jj = _pairs(code)
    i, j = order[ii], order[jj]
    qi, qj = b.quantity[i], b.quantity[j]
    ki, kj = b.kind[i], b.kind[j]
    same_m = b.multiplier[i] == b.multiplier[j]
    mfx = b.multiplier[:, None] * b.fx
    prem = b.premium * mfx
    legs: list[np.ndarray] = []
    coefs: list[np.ndarray] = []
    rules: list[np.ndarray] = []
    inits: list[np.ndarray] = []
    maints: list[np.ndarray] = []

    def add(sel: np.ndarray, leg: np.ndarray, coef: np.ndarray, rule: np.ndarray, ini: np.ndarray, mnt: np.ndarray) -> None:
        if sel.size:
            legs.append(leg)
            coefs.append(coef)
            rules.append(rule)
            inits.append(ini)
            maints.append(mnt)

    ones = np.ones
    # spreads: long i, short j, same kind (options), long expiring no earlier than short
    sp = np.flatnonzero(
        (ki == kj) & (ki != STOCK) & (qi > 0) & (qj < 0) & same_m & (b.expiry_days[i] >= b.expiry_days[j])
    )
    a, c = i[sp], j[sp]
    call = b.kind[a] == CALL
    width = np.where(call, b.strike[a] - b.strike[c], b.strike[c] - b.strike[a])
    exposure = np.maximum(width, 0.0)[:, None] * mfx[a]
    req = prem[a] + exposure
    debit = prem[a][:, 0] >= prem[c][:, 0]
    rule = np.where(call, np.where(debit, _R["debit_call_spread"], _R["credit_call_spread"]),
                    np.where(debit, _R["debit_put_spread"], _R["credit_put_spread"]))
    add(sp, np.stack([a, c, -ones(sp.size, np.int64)], 1), np.tile([1.0, 1.0, 0.0], (sp.size, 1)), rule, req, req)

    # short straddles / strangles: short call i, short put j
    sd = np.flatnonzero((ki == CALL) & (kj == PUT) & (qi < 0) & (qj < 0) & same_m)
    a, c = i[sd], j[sd]
    rc, rp = _uncovered(b, p, a), _uncovered(b, p, c)
    req = np.where(rc >= rp, rc + prem[c], rp + prem[a])
    same = (b.strike[a] == b.strike[c]) & (b.expiry_days[a] == b.expiry_days[c])
    rule = np.where(same, _R["short_straddle"], _R["short_strangle"])
    add(sd, np.stack([a, c, -ones(sd.size, np.int64)], 1), np.tile([1.0, 1.0, 0.0], (sd.size, 1)), rule, req, req)

    # stock i with option j
    pe = p.option.protective_exercise
    so = np.flatnonzero((ki == STOCK) & (kj != STOCK))
    s_, o_ = i[so], j[so]
    share = b.multiplier[o_] / b.multiplier[s_]  # shares per option contract
    lg_s, lg_o = b.quantity[s_] > 0, b.quantity[o_] > 0
    call = b.kind[o_] == CALL
    k_ = b.strike[o_][:, None]
    lvl = b.level[s_]
    stock_i = share[:, None] * alone.initial[s_]
    stock_m = share[:, None] * alone.maintenance[s_]
    unit = share[:, None] * mfx[s_]  # reporting currency per price unit of the shares
    otm = np.where(call[:, None], np.maximum(k_ - lvl, 0.0), np.maximum(lvl - k_, 0.0))
    hedge = np.minimum((pe * k_ + otm) * unit, stock_m)
    kinds = (
        ("covered_call", lg_s & call & ~lg_o, stock_i, stock_m),
        ("covered_put", ~lg_s & ~call & ~lg_o, stock_i, stock_m),
        ("protective_put", lg_s & ~call & lg_o, stock_i + alone.initial[o_], alone.maintenance[o_] + hedge),
        ("protective_call", ~lg_s & call & lg_o, stock_i + alone.initial[o_], alone.maintenance[o_] + hedge),
    )
    for name, mask, ini, mnt in kinds:  # four rules, not positions
        sel = np.flatnonzero(mask)
        leg = np.stack([s_[sel], o_[sel], -ones(sel.size, np.int64)], 1)
        coef = np.stack([share[sel], ones(sel.size), np.zeros(sel.size)], 1)
        add(sel, leg, coef, np.full(sel.size, _R[name]), ini[sel], mnt[sel])

    # stock + put i + call j (collar / conversion: long stock; reversal: short stock)
    stock_of = _stock_of_group(b)
    tri = np.flatnonzero((ki == PUT) & (kj == CALL) & same_m & (stock_of[i] >= 0))
    pu, ca = i[tri], j[tri]
    s_ = stock_of[pu]
    lg_s = b.quantity[s_] > 0
    collar = lg_s & (b.quantity[pu] > 0) & (b.quantity[ca] < 0)
    reversal = ~lg_s & (b.quantity[pu] < 0) & (b.quantity[ca] > 0)
    keep = np.flatnonzero(collar | reversal)
    pu, ca, s_, collar = pu[keep], ca[keep], s_[keep], collar[keep]
    share = b.multiplier[pu] / b.multiplier[s_]
    lvl = b.level[s_]
    unit = share[:, None] * mfx[s_]
    stock_i = share[:, None] * alone.initial[s_]
    stock_m = share[:, None] * alone.maintenance[s_]
    kp, kc = b.strike[pu][:, None], b.strike[ca][:, None]
    put_hedge = np.minimum((pe * kp + np.maximum(lvl - kp, 0.0)) * unit, p.stock.long_maintenance * kc * unit)
    call_hedge = np.minimum((pe * kc + np.maximum(kc - lvl, 0.0)) * unit, stock_m)
    c2 = collar[:, None]
    ini = stock_i + np.where(c2, alone.initial[pu], alone.initial[ca])
    mnt = np.where(c2, alone.maintenance[pu] + put_hedge, alone.maintenance[ca] + call_hedge)
    conv = (b.strike[pu] == b.strike[ca]) & (b.expiry_days[pu] == b.expiry_days[ca])
    rule = np.where(collar, np.where(conv, _R["conversion"], _R["collar"]), _R["reversal"])
    coef = np.stack([share, ones(keep.size), ones(keep.size)], 1)
    add(keep, np.stack([s_, pu, ca], 1), coef, rule, ini, mnt)

    if not legs:
        z = np.zeros((0, n_g))
        return Candidates(np.zeros((0, 3), np.int64), np.zeros((0, 3)), np.zeros(0, np.int64), z, z.copy())
    out = Candidates(
        np.concatenate(legs).astype(np.int64),
        np.concatenate(coefs).astype(float),
        np.concatenate(rules).astype(np.int64),
        np.concatenate(inits),
        np.concatenate(maints),
    )
    # by account, so that batches of the pairing hold whole accounts
    by = np.argsort(b.rank[out.legs[:, 0]], kind="stable")
    return Candidates(out.legs[by], out.coef[by], out.rule[by], out.initial[by], out.maintenance[by])


def _stock_of_group(b: Book) -> np.ndarray:
    """For each position, the stock position of its (account, underlying) with the largest |quantity|
    (-1: none)."""
    stock = np.flatnonzero(b.kind == STOCK)
    width = int(b.underlying.max(initial=0)) + 1
    key = b.rank * width + b.underlying
    out = np.full(b.size, -1, dtype=np.int64)
    if stock.size == 0:
        return out
    order = stock[np.lexsort((np.abs(b.quantity[stock]), key[stock]))]  # largest last per key
    skey = key[order]
    last = np.r_[skey[1:] != skey[:-1], True]
    keys, pos = skey[last], order[last]
    at = np.searchsorted(keys, key)
    at = np.minimum(at, keys.size - 1)
    hit = keys[at] == key
    out[hit] = pos[at[hit]]
    return out
