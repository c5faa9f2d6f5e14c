"""margin_variants: many variants of a book's accounts in one batched run equal margining each
variant's book from scratch (per method, to the cent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_what_if import paid

import marginsim
from marginsim.errors import InputError
from marginsim.model import contract_indices
from marginsim.scenario import Position, load_scenario
from marginsim.trades import leg_cash_change
from marginsim.variants import margin_variants, variant_inputs

ROOT = Path(__file__).resolve().parents[1]
TAKAS = ROOT.parent / "shared" / "data" / "span" / "takas.spn"
CENT = 0.005

#: scenario -> the variables compared (every method of the file)
CASES = {
    "span_takasbank.yaml": ("maintenance", "initial"),
    "overview_mixed_book.yaml": ("maintenance", "initial", "equity", "available_funds"),
    "strategy_reg_t_book.yaml": ("maintenance", "initial", "equity"),
    "cfd_retail_book.yaml": ("maintenance", "initial", "equity"),
    "account_forced_conversion.yaml": (
        "maintenance",
        "initial",
        "available_funds",
        "excess_liquidity",
        "state",
    ),
}


def scratch(sc, account: str, rows: list[int], legs: list[tuple[str, float]], methods):
    """Margin from scratch of the book whose account ``account`` holds positions ``rows`` (of the
    scenario's positions) and the ``legs`` (added last and paid for: the account's cash changed
    by what they cost, as test_what_if.paid writes it), the other accounts unchanged."""
    keep = [p for p in sc.positions if p.account != account]
    mine = [sc.positions[i] for i in rows] + [
        Position(contract=c, quantity=q, account=account) for c, q in legs
    ]
    sc2 = sc.model_copy(update={"positions": keep + mine})
    return marginsim.margin(paid(sc2, account, legs) if legs else sc2, methods=methods)


def draw(inputs, rng, n: int):
    """``n`` random variants: base account, a dropped row (or none), 0-2 legs in contracts the
    base account holds."""
    acct = np.asarray(inputs.accounts, dtype=object)[inputs.book["account_index"].values]
    contracts = inputs.book["contract"].values
    base, drop, legs = [], [], []
    for _ in range(n):  # drawing the test's cases
        a = str(rng.choice(np.asarray(inputs.accounts, dtype=object)))
        mine = np.flatnonzero(acct == a)
        d = int(rng.choice(mine)) if (rng.random() < 0.5 and mine.size > 1) else -1
        k = int(rng.integers(0, 3)) if d < 0 else int(rng.integers(0, 2))
        lg = [(str(rng.choice(contracts[mine])), float(rng.choice([-3, -1, 1, 2, 5]))) for _ in range(k)]
        base.append(a)
        drop.append(d)
        legs.append(lg)
    return base, drop, legs


@pytest.mark.parametrize("name", sorted(CASES))
def test_variants_equal_margin_from_scratch(name):
    if name == "span_takasbank.yaml" and not TAKAS.exists():
        pytest.skip("../shared/data/span/takas.spn is not available")
    sc = load_scenario(ROOT / "scenarios" / name)
    if sc.grid is not None and sc.grid.monte_carlo is not None:  # fewer paths: a fast test
        sc = sc.model_copy(
            update={
                "grid": sc.grid.model_copy(
                    update={"monte_carlo": sc.grid.monte_carlo.model_copy(update={"paths": 50})}
                )
            }
        )
    inputs = marginsim.load(sc)
    rng = np.random.default_rng(sum(map(ord, name)))
    base, drop, legs = draw(inputs, rng, 3)
    lv = np.array([v for v, lg in enumerate(legs) for _ in lg], dtype=np.int64)
    lc = np.array([c for lg in legs for c, _ in lg], dtype=object)
    lq = np.array([q for lg in legs for _, q in lg], dtype=float)
    res = margin_variants(
        inputs,
        np.array(base, dtype=object),
        drop=np.array(drop),
        leg_variant=lv,
        leg_contract=lc,
        leg_quantity=lq,
        leg_cash=leg_cash_change(inputs, contract_indices(inputs.contracts, lc), lq)[0],
    )
    methods = list(res)
    assert methods
    acct = np.asarray(inputs.accounts, dtype=object)[inputs.book["account_index"].values]
    for v in range(len(base)):
        rows = [int(i) for i in np.flatnonzero(acct == base[v]) if i != drop[v]]
        ref = scratch(sc, base[v], rows, legs[v], methods)
        for m in methods:
            got = res[m].isel(account=v)
            assert int(got["variant"]) == v and str(got["base_account"].values) == base[v]
            exp = ref[m].sel(account=base[v])
            for var in CASES[name]:
                if var in got:
                    np.testing.assert_allclose(
                        got[var].values, exp[var].values, rtol=0, atol=CENT, err_msg=f"{m}.{var} v{v}"
                    )


def test_unchanged_variants_equal_the_book_and_empty_variant():
    inputs = marginsim.load(ROOT / "scenarios" / "pm_hk_property.yaml")
    before = marginsim.margin(inputs)["portfolio_margin"]
    res = margin_variants(inputs, ["main", "main"], drop=[-1, 0])["portfolio_margin"]
    assert res.sizes["account"] == 2
    np.testing.assert_array_equal(
        res["maintenance"].isel(account=0).values, before["maintenance"].sel(account="main").values
    )
    assert res["variant"].values.tolist() == [0, 1] and res["base_account"].values.tolist() == [
        "main",
        "main",
    ]


def test_account_keyed_data_inherited():
    # cfd_retail_book: accounts main (retail) and pro (professional), each funded separately
    inputs = marginsim.load(ROOT / "scenarios" / "cfd_retail_book.yaml")
    vin = variant_inputs(inputs, ["pro", "main", "pro"])
    funding = vin.scenario.cfd.accounts
    assert set(funding) == {"pro#variant0", "main#variant1", "pro#variant2"}
    assert funding["pro#variant0"] == inputs.scenario.cfd.accounts["pro"]
    assert funding["main#variant1"] == inputs.scenario.cfd.accounts["main"]
    # order data (open_price, opened) of the base rows travel with them
    book = vin.book
    assert "opened" in book and "open_price" in book
    table = inputs.scenario.position_table()
    rows = np.flatnonzero(table.account == "main")
    at = np.flatnonzero(book["account_index"].values == 1)
    np.testing.assert_array_equal(book["open_price"].values[at], table.open_price[rows])


def test_bad_variants():
    inputs = marginsim.load(ROOT / "scenarios" / "pm_hk_property.yaml")
    with pytest.raises(InputError, match="unknown account 'nobody'"):
        margin_variants(inputs, ["nobody"])
    with pytest.raises(InputError, match="unknown contract 'NOPE'"):
        margin_variants(inputs, ["main"], leg_variant=[0], leg_contract=["NOPE"], leg_quantity=[1.0])


def test_leg_cash_changes_the_variants_cash():
    # overview_mixed_book: portfolio margin cash main 900,000 and hedged 300,000 [USD]; no account
    # section (the layer's defaults: accounts hold no cash). Buying 2 MEGA at 250 costs 500 USD.
    inputs = marginsim.load(ROOT / "scenarios" / "overview_mixed_book.yaml")
    vin = variant_inputs(
        inputs,
        ["main", "hedged", "main"],
        leg_variant=[0, 1, 1],
        leg_contract=["MEGA", "MEGA", "IDX-DEC26"],
        leg_quantity=[2.0, -4.0, 1.0],
        leg_cash=[-500.0, 1000.0, 0.0],
    )
    assert vin.scenario.portfolio_margin.cash == {
        "main#variant0": 899_500.0,
        "hedged#variant1": 301_000.0,
        "main#variant2": 900_000.0,
    }
    funds = vin.scenario.account.accounts
    assert set(funds) == {"main#variant0", "hedged#variant1"}
    assert funds["main#variant0"].cash == {"NonHK_": {"USD": -500.0}}
    assert funds["hedged#variant1"].cash == {"NonHK_": {"USD": 1000.0}}
