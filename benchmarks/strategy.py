"""Strategy-based margin with optimal pairing: 10,000 accounts of up to 20 stock and option positions.

The book: 20 stocks, each with calls and puts at 9 strikes (80 % to 120 %) and two expiries (3 and
14 months); each account holds 1 to 20 positions (uniform) on 1 to 3 of the stocks, so that most
positions can pair (spreads, straddles, covered calls, collars...), quantities 1-5 contracts or
100-500 shares, long or short. The script prints, for the method without the comparison (pricing,
rules, candidates and the HiGHS programs) and with it (portfolio margin on the same book): wall and
CPU seconds (best of ``--repeat``), the candidate strategies, the accounts with any, the requirement
unpaired and paired, and the figures per ``batch_variables`` (variables per milp call); and, on
``--greedy-accounts`` accounts of the same kind, the totals of a greedy pairing against the optimum.

Run:  .venv/bin/python benchmarks/strategy.py [--accounts 10000] [--repeat 3] [--batches 2000,5000,20000]
(``--accounts 200 --repeat 1`` for a quick check.)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import marginsim
from marginsim.methods.strategy import strategy_book, strategy_margin
from marginsim.methods.strategy.rules import candidates, standalone
from marginsim.params.strategy import StrategyParams

SEED = 17
N_UND = 20
STRIKES = np.linspace(0.8, 1.2, 9)
EXPIRIES = ("2027-02-19", "2028-01-21")


def base_scenario() -> dict:
    """Market and contracts; one position (the book is replaced by ``with_book``)."""
    rng = np.random.default_rng(SEED)
    market, contracts = {}, {}
    for u in range(N_UND):  # the contract table (20 x 37 contracts), not positions
        name = f"S{u:02d}"
        price = float(rng.uniform(20, 400))
        market[name] = {"price": price, "vol": float(rng.uniform(0.2, 0.6)), "rate": 0.04, "product_class": "equity",
                        "listing": "US", "market_cap": 5.0e10}
        contracts[name] = {"type": "stock", "underlying": name}
        for e, exp in enumerate(EXPIRIES):
            for s in STRIKES:
                for kind in ("call", "put"):
                    contracts[f"{name}-{kind[0].upper()}{s:.2f}-{e}"] = {
                        "type": kind, "underlying": name, "option_on": "spot", "strike": round(float(s * price), 2),
                        "expiry": exp, "multiplier": 100,
                    }
    return {
        "name": "strategy-benchmark", "as_of": "2026-11-20", "currency": "USD", "methods": ["strategy"],
        "market": market, "contracts": contracts,
        "positions": [{"account": "x", "contract": "S00", "quantity": 1}],
        "strategy": {},
    }


def book(inputs: marginsim.Inputs, n_accounts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random positions: contract index, quantity, account name, without a loop over positions."""
    rng = np.random.default_rng(SEED + 1)
    names = inputs.contracts["contract"].values
    und = inputs.contracts["underlying_index"].values
    per_und = np.bincount(und, minlength=N_UND)
    first = np.r_[0, np.cumsum(per_und)[:-1]]
    order = np.argsort(und, kind="stable")
    n_pos = rng.integers(1, 21, n_accounts)
    acct = np.repeat(np.arange(n_accounts), n_pos)
    n_und = rng.integers(1, 4, n_accounts)
    picks = rng.integers(0, N_UND, (n_accounts, 3))
    u = picks[acct, rng.integers(0, 1 << 30, acct.size) % n_und[acct]]
    k = order[first[u] + rng.integers(0, 1 << 30, acct.size) % per_und[u]]
    k = np.where(rng.random(acct.size) < 0.15, order[first[u]], k)  # about 15 % stock positions
    stock = inputs.contracts["type"].values[k] == "stock"
    size = np.where(stock, 100 * rng.integers(1, 6, acct.size), rng.integers(1, 6, acct.size))
    qty = size * np.where(rng.random(acct.size) < 0.5, 1, -1)
    return names[k], qty.astype(float), np.char.add("a", acct.astype(str)).astype(object)


def greedy(q, legs, coef, saving, unpaired):
    """A greedy pairing (the reference the optimum is compared with): the strategy saving most per
    unit first, as many units as its legs allow, and so on."""
    held = np.abs(q).astype(float)
    total = unpaired
    for s in np.argsort(saving, kind="stable"):  # one account's candidates
        if saving[s] >= 0:
            break
        units = min(np.floor(held[leg] / c + 1e-9) for leg, c in zip(legs[s], coef[s]) if leg >= 0)
        for leg, c in zip(legs[s], coef[s]):
            if leg >= 0:
                held[leg] -= units * c
        total += units * saving[s]
    return total


def greedy_figures(inputs: marginsim.Inputs) -> None:
    """Unpaired, greedy and optimal totals (a Python loop over accounts: a reference, not timed)."""
    p = StrategyParams(comparison={"enabled": False})
    ds = strategy_margin(inputs, p)
    b = strategy_book(inputs, p)
    al = standalone(b, p)
    cd = candidates(b, p, al)
    owner = b.account[cd.legs[:, 0]]
    for basis, tot, single in (("initial", cd.initial, al.initial), ("maintenance", cd.maintenance, al.maintenance)):
        sav = cd.saving(tot, single)[:, 0]
        opt = ds[basis].values
        g_total, worse = 0.0, 0
        for acc in range(len(inputs.accounts)):  # the reference, account by account
            pos = np.flatnonzero(b.account == acc)
            sel = np.flatnonzero(owner == acc)
            unp = float((np.abs(b.quantity[pos]) * single[pos, 0]).sum())
            g = greedy(b.quantity, cd.legs[sel], cd.coef[sel], sav[sel], unp)
            g_total += g
            worse += g > opt[acc] + 1e-6
        print(f"{basis}: unpaired {float(ds[basis + '_unpaired'].sum()):,.0f}, greedy {g_total:,.0f}, optimal "
              f"{float(opt.sum()):,.0f} (greedy above the optimum in {worse:,} of {len(inputs.accounts):,} accounts)")


def timed(fn, repeat: int):
    best = (np.inf, np.inf, None)
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        w, c = time.perf_counter() - w, time.process_time() - c
        if w < best[0]:
            best = (w, c, out)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batches", default="2000,5000,20000")
    ap.add_argument("--greedy-accounts", type=int, default=2000, help="accounts of the greedy comparison (0: none)")
    args = ap.parse_args()
    base = marginsim.load(base_scenario())
    contract, qty, account = book(base, args.accounts)
    inputs = base.with_book(contract, qty, account)
    print(f"{args.accounts:,} accounts, {contract.size:,} positions ({base.contracts.sizes['contract']} contracts)")
    if args.greedy_accounts:
        g_contract, g_qty, g_account = book(base, args.greedy_accounts)
        greedy_figures(base.with_book(g_contract, g_qty, g_account))
    params = StrategyParams(comparison={"enabled": False})
    b = strategy_book(inputs, params)
    alone = standalone(b, params)
    c = candidates(b, params, alone)
    saves = (c.saving(c.initial, alone.initial)[:, 0] < 0)
    print(f"netted positions {b.size:,}; candidate strategies {c.size:,}, saving at initial {int(saves.sum()):,} "
          f"in {np.unique(b.account[c.legs[saves, 0]]).size:,} accounts")
    for batch in [int(x) for x in args.batches.split(",")]:
        p = StrategyParams(comparison={"enabled": False}, batch_variables=batch)
        w, cpu, ds = timed(lambda p=p: strategy_margin(inputs, p), args.repeat)
        print(f"strategy, batch_variables {batch:>7,}: {w:6.2f} s wall, {cpu:6.2f} s CPU (best of {args.repeat}); "
              f"initial paired {float(ds['initial'].sum()):,.0f} vs unpaired {float(ds['initial_unpaired'].sum()):,.0f}; "
              f"maintenance {float(ds['maintenance'].sum()):,.0f} vs {float(ds['maintenance_unpaired'].sum()):,.0f}")
    p = StrategyParams(comparison={"enabled": False}, relaxation_first=False)
    w, cpu, ds = timed(lambda: strategy_margin(inputs, p), args.repeat)
    print(f"strategy, the integer program for every account (no relaxation first, batch 5,000): {w:6.2f} s wall, "
          f"{cpu:6.2f} s CPU; initial paired {float(ds['initial'].sum()):,.0f}")
    p = StrategyParams()
    w, cpu, ds = timed(lambda: strategy_margin(inputs, p), 1)
    print(f"strategy with the portfolio-margin comparison: {w:6.2f} s wall, {cpu:6.2f} s CPU; "
          f"accounts choosing portfolio margin {int((ds['choose'] == 'portfolio_margin').sum()):,}")


if __name__ == "__main__":
    main()
