"""SPAN what-if, incremental (marginsim.methods.span.what_if, marginsim.kernels.span_whatif).

The reference is the full SPAN margin of every after-book, margined in one batch of
pseudo-accounts (the trade's account's positions in book order, then the trade's legs): with the
numba engine the incremental path gives it bit for bit, with the numpy engine to rounding.
Books are random on the real file takas.spn (skipped when ../shared is absent) and on model-priced
scenarios (with a grid dim); trades open, enlarge, reduce, close and flip positions and name
contracts the account does not hold, with one or several legs across combined commodities.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import marginsim
from marginsim.errors import InputError
from marginsim.kernels import span as K
from marginsim.kernels import span_pairs as SP
from marginsim.kernels import span_whatif as W
from marginsim.methods.span import span_margin
from marginsim.methods.span.what_if import span_marginal, span_what_if, span_what_if_arrays
from marginsim.trades import TradeBatch
from marginsim.variants import margin_variants
from marginsim.whatif import what_if

ROOT = Path(__file__).resolve().parents[1]
TAKAS = ROOT.parent / "shared" / "data" / "span" / "takas.spn"
needs_takas = pytest.mark.skipif(not TAKAS.exists(), reason="../shared/data/span/takas.spn is not available")

PER_TRADE = ("maintenance", "initial", "span_risk", "net_option_value")
PER_GROUP = (
    "scan_risk",
    "active_scenario",
    "intra_spread_charge",
    "spot_charge",
    "inter_spread_credit",
    "short_option_minimum",
    "risk",
    "held",
)


@pytest.fixture(scope="module")
def takas():
    return marginsim.load(
        {"name": "takas", "as_of": "2016-05-17", "currency": "TRY", "span": {"source": str(TAKAS)}}
    )


def random_trades(rng, inputs, n_trades, max_legs=3):
    """Trades on the book's accounts: each leg opens (a contract the account lacks), enlarges,
    reduces, closes or flips one of the account's positions."""
    book = inputs.book
    names = inputs.contracts["contract"].values
    accounts = np.asarray(inputs.accounts, dtype=object)
    acct = rng.integers(0, accounts.size, n_trades)
    n_legs = rng.integers(1, max_legs + 1, n_trades)
    leg_trade = np.repeat(np.arange(n_trades), n_legs)
    leg_acct = acct[leg_trade]
    pos_acct = book["account_index"].values
    contract, qty = [], []
    kind = rng.integers(0, 5, leg_trade.size)
    for a, kd in zip(leg_acct, kind):  # building test data, not margining
        mine = np.flatnonzero(pos_acct == a)
        if kd == 0 or not mine.size:  # any contract of the file (mostly not held)
            contract.append(names[rng.integers(0, names.size)])
            qty.append(float(rng.integers(1, 8) * rng.choice([-1, 1])))
            continue
        p = mine[rng.integers(0, mine.size)]
        q = float(book["quantity"].values[p])
        contract.append(book["contract"].values[p])
        qty.append({1: q or 1.0, 2: -q / 2 if q else 1.0, 3: -q or 1.0, 4: -2 * q or -1.0}[int(kd)])
    return accounts[acct], leg_trade, np.array(contract, dtype=object), np.array(qty)


def after_books(inputs, account, leg_trade, leg_contract, leg_qty):
    """One pseudo-account per trade: its account's positions in book order, then its legs."""
    book = inputs.book
    names = np.asarray(inputs.accounts, dtype=object)
    pos_acct = names[book["account_index"].values]
    c, q, a = [], [], []
    for t, acct in enumerate(account):  # building the reference book, not margining
        mine = pos_acct == acct
        legs = leg_trade == t
        c += list(book["contract"].values[mine]) + list(leg_contract[legs])
        q += list(book["quantity"].values[mine]) + list(leg_qty[legs])
        a += [t] * int(mine.sum() + legs.sum())
    return inputs.with_book(np.array(c, dtype=object), np.array(q), np.array(a))


def assert_same_as_full(after, full, *, exact):
    full = full.rename(account="trade").assign_coords(trade=after["trade"].values)
    for name in PER_TRADE:
        if exact:
            np.testing.assert_array_equal(after[name].values, full[name].values, err_msg=name)
        else:
            np.testing.assert_allclose(
                after[name].values, full[name].values, rtol=1e-9, atol=1e-6, err_msg=name
            )
    assert set(after["group"].values) == set(full["group"].values)
    for name in PER_GROUP:
        got, want = after[name], full[name].sel(group=after["group"].values)
        if name in ("active_scenario", "held"):
            # the active scenario may differ on ties broken by rounding (numpy); never the figures
            if exact or name == "held":
                np.testing.assert_array_equal(got.values, want.values, err_msg=name)
            continue
        if exact:
            np.testing.assert_array_equal(got.values, want.values, err_msg=name)
        else:
            np.testing.assert_allclose(got.values, want.values, rtol=1e-9, atol=1e-6, err_msg=name)


@needs_takas
@pytest.mark.parametrize("engine", ["numba", "numpy"])
def test_after_figures_equal_the_full_margin_of_each_after_book_on_takas(takas, engine):
    rng = np.random.default_rng(15)
    names = takas.contracts["contract"].values
    sizes = np.array([60, 25, 8, 1, 40])
    account = np.repeat([f"acct{i}" for i in range(sizes.size)], sizes)
    pick = rng.integers(0, names.size, sizes.sum())
    inputs = takas.with_book(names[pick], rng.integers(-10, 11, sizes.sum()).astype(float), account)
    trades = random_trades(rng, inputs, 300)
    after = span_what_if_arrays(inputs, *trades, engine=engine)
    full = span_margin(after_books(inputs, *trades), engine=engine, scan_loss=False)
    assert_same_as_full(after, full, exact=engine == "numba")
    # the trades exercise every component
    for name in ("inter_spread_credit", "intra_spread_charge", "short_option_minimum"):
        assert float(after[name].sum()) > 0, name
    assert (after["maintenance"].values != full["maintenance"].values[0]).any()
    np.testing.assert_array_equal(after["account"].values, trades[0])


@needs_takas
def test_the_parallel_kernels_give_the_serial_figures_and_the_full_margin(takas, monkeypatch):
    """The threaded variants of the per-trade kernels (large batches) run the same arithmetic."""
    rng = np.random.default_rng(16)
    names = takas.contracts["contract"].values
    sizes = np.array([70, 30, 3])
    account = np.repeat([f"acct{i}" for i in range(sizes.size)], sizes)
    pick = rng.integers(0, names.size, sizes.sum())
    inputs = takas.with_book(names[pick], rng.integers(-10, 11, sizes.sum()).astype(float), account)
    trades = random_trades(rng, inputs, 400)
    monkeypatch.setattr(W, "PARALLEL_MIN_TRADES", 10**12)
    serial = span_what_if_arrays(inputs, *trades, engine="numba", groups=False)
    monkeypatch.setattr(W, "PARALLEL_MIN_TRADES", 0)
    parallel = span_what_if_arrays(inputs, *trades, engine="numba", groups=False)
    xr.testing.assert_identical(serial, parallel)
    full = span_margin(after_books(inputs, *trades), engine="numba", scan_loss=False)
    for name in ("maintenance", "initial", "span_risk", "net_option_value"):
        np.testing.assert_array_equal(parallel[name].values, full[name].values, err_msg=name)


@needs_takas
def test_one_hundred_position_account_and_one_leg_trades_on_every_kind_of_contract(takas):
    """The benchmark's case: one account, many one-leg trades (half on contracts it holds)."""
    rng = np.random.default_rng(3)
    names = takas.contracts["contract"].values
    held = rng.integers(0, names.size, 100)
    inputs = takas.with_book(names[held], rng.integers(-10, 11, 100).astype(float))
    n = 400
    k = np.where(rng.random(n) < 0.5, held[rng.integers(0, 100, n)], rng.integers(0, names.size, n))
    q = (rng.integers(1, 21, n) * rng.choice([-1, 1], n)).astype(float)
    account = np.full(n, "main", dtype=object)
    after = span_what_if(inputs, TradeBatch.from_arrays(inputs, names[k], q))
    full = span_margin(after_books(inputs, account, np.arange(n), names[k], q), scan_loss=False)
    assert_same_as_full(after, full, exact=True)
    lean = span_what_if_arrays(inputs, account, np.arange(n), names[k], q, groups=False)
    assert "scan_risk" not in lean
    for name in PER_TRADE:
        np.testing.assert_array_equal(lean[name].values, after[name].values)


@needs_takas
def test_hand_checked_calendar_spread_and_close_on_the_file(takas):
    """AKBNKE on takas.spn: a future's scanning risk is 90 TRY, a calendar spread is charged 90 TRY
    and fully offsets the scan (test_span_file_margin checks both against the file)."""
    inputs = takas.with_book(["AKBNKE:F:201606S0"], [1.0])
    after = span_what_if_arrays(
        inputs,
        ["main"] * 4,
        [0, 1, 2, 3],
        ["AKBNKE:F:201607S0", "AKBNKE:F:201606S0", "AKBNKE:F:201606S0", "AKBNKE:F:201606S0"],
        [-1.0, 1.0, -1.0, -2.0],
        ids=["calendar", "double", "close", "flip"],
    )
    m = after["maintenance"]
    assert float(m.sel(trade="calendar")) == pytest.approx(90.0, abs=1e-9)  # the spread charge alone
    assert float(after["scan_risk"].sel(trade="calendar", group="AKBNKE")) == 0.0
    assert float(m.sel(trade="double")) == pytest.approx(180.0, abs=1e-9)
    assert float(m.sel(trade="close")) == 0.0
    assert float(m.sel(trade="flip")) == pytest.approx(90.0, abs=1e-9)  # short 1: the same scan


@pytest.mark.parametrize("name", ["span_inter_commodity.yaml", "span_calendar_spread.yaml"])
@pytest.mark.parametrize("engine", ["numba", "numpy"])
def test_model_priced_scenarios_with_their_grid(scenarios_dir, name, engine):
    inputs = marginsim.load(scenarios_dir / name)
    rng = np.random.default_rng(len(name))
    trades = random_trades(rng, inputs, 60)
    after = span_what_if_arrays(inputs, *trades, engine=engine)
    full = span_margin(after_books(inputs, *trades), engine=engine, scan_loss=False)
    assert tuple(d for d in after["maintenance"].dims if d != "trade") == inputs.grid_dims
    assert_same_as_full(after, full, exact=engine == "numba")
    if name == "span_inter_commodity.yaml":
        assert after.sizes["shift"] == 5 and float(after["inter_spread_credit"].sum()) > 0


def test_legs_out_of_span_scope_and_accounts_without_positions(scenarios_dir):
    inputs = marginsim.load(scenarios_dir / "span_inter_commodity.yaml")
    after = span_what_if_arrays(
        inputs,
        ["hedge-fund", "new-account"],
        [0, 1, 1],
        ["BKX-DEC26", "BANK-DEC26", "BKX-DEC26"],
        [5.0, 255.0, -20.0],
    )
    # a new account holding the hedge fund's futures: the hedge fund without its option
    alone = span_margin(inputs.with_book(["BANK-DEC26", "BKX-DEC26"], [255.0, -20.0]), scan_loss=False)
    np.testing.assert_allclose(
        after["maintenance"].isel(trade=1).values, alone["maintenance"].values[0], rtol=1e-12
    )
    assert after["account"].values.tolist() == ["hedge-fund", "new-account"]


@pytest.mark.parametrize("engine", ["numba", "numpy"])
def test_trades_without_span_contracts_in_accounts_without_span_positions(scenarios_dir, engine):
    """A stock trade changes nothing of SPAN; an account with no SPAN position gets the legs' SPAN."""
    inputs = marginsim.load(scenarios_dir / "overview_mixed_book.yaml")
    stock_only = span_what_if_arrays(inputs, ["nobody"], [0], ["MEGA"], [10.0], engine=engine)
    assert stock_only["maintenance"].values.tolist() == [0.0] and stock_only.sizes["group"] == 0
    after = span_what_if_arrays(
        inputs,
        ["nobody", "hedged"],
        [0, 0, 1],
        ["IDX-DEC26", "MEGA", "MEGA"],
        [10.0, 5.0, 1.0],
        engine=engine,
    )
    alone = span_margin(inputs.with_book(["IDX-DEC26"], [10.0]), engine=engine)
    before = span_margin(inputs, engine=engine)
    assert float(after["maintenance"][0]) == pytest.approx(float(alone["maintenance"][0]), rel=1e-12)
    assert float(after["maintenance"][1]) == pytest.approx(
        float(before["maintenance"].sel(account="hedged")), rel=1e-12
    )


@needs_takas
@pytest.mark.parametrize("engine", ["numba", "numpy"])
def test_marginal_is_the_margin_without_the_position(takas, engine):
    """SPAN nets the rows of one contract in an account: removing a row is adding its opposite."""
    rng = np.random.default_rng(8)
    names = takas.contracts["contract"].values
    sizes = np.array([30, 12, 1])
    account = np.repeat(["a", "b", "c"], sizes)
    pick = rng.integers(0, names.size, sizes.sum())
    pick[5] = pick[3]  # two rows of one contract in an account
    inputs = takas.with_book(names[pick], rng.integers(-10, 11, sizes.sum()).astype(float), account)
    result = span_margin(inputs, engine=engine)
    marginal = span_marginal(inputs, result, engine=engine)
    book = inputs.book
    n = book.sizes["position"]
    c, q, a = [], [], []
    for p in range(n):  # the reference: every account without one of its rows
        mine = np.flatnonzero((account == account[p]) & (np.arange(n) != p))
        c += list(names[pick[mine]])
        q += list(book["quantity"].values[mine])
        a += [p] * mine.size
    without = span_margin(
        inputs.with_book(np.array(c, dtype=object), np.array(q), np.array(a)), scan_loss=False
    )
    assert without.sizes["account"] == n - 1  # the one-position account is left empty
    for name in ("maintenance", "initial"):
        before = result[name].sel(account=account).values
        reference = before.copy()
        kept = without["account"].values.astype(int)
        reference[kept] -= without[name].values
        np.testing.assert_allclose(marginal[name].values, reference, rtol=1e-9, atol=1e-6)
    assert marginal["maintenance"].dims == ("position",)
    np.testing.assert_array_equal(marginal["position"].values, result["position"].values)
    np.testing.assert_array_equal(marginal["account"].values, account)


def test_marginal_with_a_grid(scenarios_dir):
    inputs = marginsim.load(scenarios_dir / "span_calendar_spread.yaml")
    result = span_margin(inputs)
    marginal = span_marginal(inputs, result)
    book = inputs.book
    for p in range(book.sizes["position"]):  # five positions: margin each book without one
        keep = np.arange(book.sizes["position"]) != p
        rest = span_margin(inputs.with_book(book["contract"].values[keep], book["quantity"].values[keep]))
        np.testing.assert_allclose(
            marginal["maintenance"].isel(position=p).values,
            result["maintenance"].isel(account=0).values - rest["maintenance"].isel(account=0).values,
            rtol=1e-9,
            atol=1e-6,
        )


def test_the_base_cascade_is_the_books_credit():
    """The cascade state the compiled path keeps gives the book's own inter-commodity credit."""
    rng = np.random.default_rng(2)
    n_a, n_c, n_g = 40, 6, 3
    acct = np.repeat(np.arange(n_a), 4)
    pairs = SP.pairs_of(acct, rng.integers(0, n_c, acct.size), n_a, n_c)
    net = rng.normal(size=(pairs.size, n_g)) * 5
    wfpr = rng.uniform(0, 3, size=(pairs.size, n_g))
    leg = K.SpreadLeg
    table = SP.inter_table(
        [
            K.Spread(0.5, [leg(0, "A", 1.0), leg(1, "B", 2.0)]),
            K.Spread(0.3, [leg(1, "A", 1.0), leg(2, "B", 1.0), leg(3, "A", 0.5)]),
            K.Spread(0.7, [leg(4, "A", 1.0), leg(0, "B", 1.0)]),
        ]
    )
    zeros = np.zeros((pairs.size, n_g))
    state = W._PairState(
        pairs=pairs,
        loss=np.zeros((pairs.size, n_g, 1)),
        scan_risk=zeros,
        active=zeros.astype(np.int64),
        row0=np.zeros(pairs.size + 1, dtype=np.int64),
        ledger=np.zeros((0, n_g)),
        intra=zeros,
        spot=zeros,
        net_left=net,
        wfpr=wfpr,
        som=np.zeros(pairs.size),
    )
    tables = W.SpanTables(
        risk_array=np.zeros((0, n_g, 1)),
        scenario_pair=np.zeros(1, dtype=np.int64),
        time_scenarios=np.zeros(1, dtype=np.int64),
        cc_of_k=np.zeros(0, dtype=np.int64),
        month_idx=np.zeros(0, dtype=np.int64),
        n_months=np.ones(n_c, dtype=np.int64),
        delta=np.zeros((0, n_g)),
        is_call=np.zeros(0, dtype=bool),
        is_put=np.zeros(0, dtype=bool),
        intra=None,
        inter=table,
        som_rate=np.zeros(n_c),
        som_net=np.zeros(n_c, dtype=bool),
        ratio=np.ones(n_c),
        fx=np.ones(n_c),
        nov=np.zeros((0, n_g)),
    )
    credit, held, snap_rem, snap_credit = W._base_credit(state, tables, "numba")
    expect = SP.inter_credit(net, wfpr, pairs, table, "numba")
    assert (expect > 0).any()
    np.testing.assert_array_equal(credit, expect)
    assert snap_rem.shape == snap_credit.shape == (n_a, 3, 3, n_g)
    # the held sets: bit c of account a set when the account holds combined commodity c
    bits = (held[:, 0][:, None] >> np.arange(n_c, dtype=np.uint64)) & np.uint64(1)
    dense = np.zeros((n_a, n_c), dtype=np.uint64)
    dense[pairs.account, pairs.cc] = 1
    np.testing.assert_array_equal(bits, dense)


def test_bad_trades(scenarios_dir):
    inputs = marginsim.load(scenarios_dir / "span_calendar_spread.yaml")
    with pytest.raises(InputError, match="unknown contract 'NOPE'"):
        span_what_if_arrays(inputs, ["main"], [0], ["NOPE"], [1.0])
    with pytest.raises(InputError, match="not a finite number"):
        span_what_if_arrays(inputs, ["main"], [0], ["IDX-DEC26"], [np.nan])
    with pytest.raises(ValueError, match="one element per leg"):
        span_what_if_arrays(inputs, ["main"], [0, 0], ["IDX-DEC26"], [1.0])
    with pytest.raises(ValueError, match="must index the trades"):
        span_what_if_arrays(inputs, ["main"], [1], ["IDX-DEC26"], [1.0])


def test_trade_order_and_blocks_do_not_change_the_figures(scenarios_dir, monkeypatch):
    import marginsim.methods.span.what_if as WI

    inputs = marginsim.load(scenarios_dir / "span_inter_commodity.yaml")
    rng = np.random.default_rng(4)
    account, leg_trade, contract, qty = random_trades(rng, inputs, 40)
    whole = span_what_if_arrays(inputs, account, leg_trade, contract, qty)
    monkeypatch.setattr(WI, "MAX_BLOCK_PAIRS", 7)  # many blocks of a few trades
    blocks = span_what_if_arrays(inputs, account, leg_trade, contract, qty)
    xr.testing.assert_identical(whole, blocks)
    order = np.argsort(-leg_trade, kind="stable")  # trades' legs in reverse, each trade's in order
    shuffled = span_what_if_arrays(inputs, account, leg_trade[order], contract[order], qty[order])
    xr.testing.assert_identical(whole, shuffled)


# -- the SPAN file features: rate classes, spot rates per period, period legs, W per leg and F,
# WFPR methods, super spreads, exposure margin (hand-written files of tests/data/span) -------------

DATA = ROOT / "tests" / "data" / "span"
FEATURE_FILES = {
    "period_legs.xml": ("INR", "2026-01-05", {}),
    "tiers_spot.xml": ("EUR", "2026-01-05", {}),
    "rate_classes.xml": ("USD", "2026-01-05", {}),
    "rate_classes_initial.xml": ("USD", "2026-01-05", {}),  # rate_classes.xml, its class initial
    "inter_spreads.xml": ("EUR", "2024-01-02", {}),
    "super_period_legs.xml": ("EUR", "2024-01-02", {}),  # period legs (pLeg) in super spreads
    "exposure_nse.xml": ("INR", "2024-01-02", {"exposure_margin": {"futures": 0.03, "options": 0.02}}),
}


def initial_class_file(tmp_path):
    """rate_classes.xml with its class 1 initial (isM 0) and class 2 maintenance = 0.8 x class 1
    (as test_span_intra_files.test_rate_classes_initial_file_scaled_into_maintenance)."""
    text = (
        (DATA / "rate_classes.xml").read_text(encoding="utf-8")
        .replace("<r>1</r><isCust>1</isCust><acctType>S</acctType><isM>1</isM>", "<r>1</r><isCust>1</isCust><acctType>S</acctType><isM>0</isM>")
        .replace("<r>2</r><isCust>1</isCust><acctType>S</acctType><isM>0</isM>", "<r>2</r><isCust>1</isCust><acctType>S</acctType><isM>1</isM>")
        .replace("<val>1.25</val>", "<val>0.8</val>")
    )  # fmt: skip
    path = tmp_path / "rate_classes_initial.xml"
    path.write_text(text, encoding="utf-8")
    return path


def feature_book(name, seed, sizes=(14, 8, 5, 1), tmp_path=None):
    """A random book of a few accounts over every contract of a hand-written file."""
    currency, as_of, span = FEATURE_FILES[name]
    source = initial_class_file(tmp_path) if name == "rate_classes_initial.xml" else DATA / name
    base = marginsim.load(
        {"name": name, "as_of": as_of, "currency": currency, "span": {"source": str(source), **span}}
    )
    rng = np.random.default_rng(seed)
    names = base.contracts["contract"].values
    sizes = np.array(sizes)
    account = np.repeat([f"a{i}" for i in range(sizes.size)], sizes)
    pick = rng.integers(0, names.size, sizes.sum())
    qty = (rng.integers(1, 6, sizes.sum()) * rng.choice([-1, 1], sizes.sum())).astype(float)
    return base.with_book(names[pick], qty, account), rng


@pytest.mark.parametrize("name", list(FEATURE_FILES))
@pytest.mark.parametrize("engine", ["numba", "numpy"])
def test_after_figures_equal_the_full_margin_on_the_feature_files(name, engine, tmp_path):
    inputs, rng = feature_book(name, seed=len(name), tmp_path=tmp_path)
    trades = random_trades(rng, inputs, 150)
    after = span_what_if_arrays(inputs, *trades, engine=engine)
    full = span_margin(after_books(inputs, *trades), engine=engine, scan_loss=False)
    assert_same_as_full(after, full, exact=engine == "numba")
    # the file's feature is in the figures
    if name.startswith("rate_classes"):  # maintenance below initial (class 1 initial: 0.8 x it)
        assert (full["initial"].values > full["maintenance"].values).any()
        initial = name == "rate_classes_initial.xml"
        assert set(full["rate_class"].values) == {"initial" if initial else "maintenance"}
    if name in ("inter_spreads.xml", "super_period_legs.xml"):
        assert float(np.abs(full["super_spread_credit"]).sum()) > 0
        assert float(np.abs(full["inter_spread_credit"]).sum()) > 0
        # the per-trade super spread credit is the full margin's, per CC
        got = after["super_spread_credit"]
        want = full["super_spread_credit"].sel(group=after["group"].values)
        assert float(np.abs(got).sum()) > 0
        if engine == "numba":
            np.testing.assert_array_equal(got.values, want.values)
        else:
            np.testing.assert_allclose(got.values, want.values, rtol=1e-9, atol=1e-6)
    else:
        assert "super_spread_credit" not in after
    if name == "super_period_legs.xml" and engine == "numba":
        # some trades form (or miss) a spread that legs on all of AAA's months would miss (or form)
        text = (DATA / name).read_text(encoding="utf-8")
        tiers = re.sub(r"<pLeg><cc>(\w+)</cc><pe>\d+</pe>", r"<tLeg><cc>\1</cc><tn>0</tn>", text)
        (tmp_path / "tier_legs.xml").write_text(tiers.replace("</pLeg>", "</tLeg>"), encoding="utf-8")
        book, accounts = inputs.book, np.asarray(inputs.accounts, dtype=object)
        other = marginsim.load(
            {"name": "t", "as_of": "2024-01-02", "currency": "EUR", "span": {"source": str(tmp_path / "tier_legs.xml")}}
        ).with_book(book["contract"].values, book["quantity"].values, accounts[book["account_index"].values])
        other_after = span_what_if_arrays(other, *trades, engine=engine)
        assert (other_after["maintenance"].values != after["maintenance"].values).any()
    if name == "exposure_nse.xml":
        assert (full["exposure_margin"].values > 0).mean() > 0.5
        np.testing.assert_array_equal(after["exposure_margin"].values, full["exposure_margin"].values)
    if name in ("tiers_spot.xml", "period_legs.xml"):
        assert float(full["intra_spread_charge"].sum()) > 0
    if name == "tiers_spot.xml":
        assert float(full["spot_charge"].sum()) > 0


@pytest.mark.parametrize(
    "name", ["inter_spreads.xml", "super_period_legs.xml", "exposure_nse.xml", "rate_classes_initial.xml"]
)
def test_what_if_on_the_feature_files_is_the_generic_after(name, tmp_path):
    """marginsim.what_if (SPAN's incremental hook) against margining every after-book from scratch
    as variants of the book (the generic path every method without a hook takes)."""
    inputs, rng = feature_book(name, seed=7, tmp_path=tmp_path)
    account, leg_trade, contract, qty = random_trades(rng, inputs, 40)
    trades = [
        {"account": str(account[t]), "legs": [{"contract": str(c), "quantity": float(q)}
         for c, q in zip(contract[leg_trade == t], qty[leg_trade == t])]}
        for t in range(account.size)
    ]  # fmt: skip
    res = what_if(inputs, trades, methods=["span"])["span"]
    var = margin_variants(
        inputs, account, leg_variant=leg_trade, leg_contract=contract, leg_quantity=qty, methods=["span"]
    )["span"]
    for x in ("maintenance", "initial"):
        np.testing.assert_allclose(res[f"{x}_after"].values, var[x].values, rtol=1e-12, atol=1e-9, err_msg=x)


def test_hand_checked_exposure_margin_of_a_trade():
    """exposure_nse.xml (test_span_inter's hand computation): +50 NIF future at 20,100 carries
    0.03 x 50 x 20,100 = 30,150 of exposure; a -50 call on it at the underlying's 20,000 adds
    0.02 x 50 x 20,000 = 20,000; buying the call back leaves the future's."""
    inputs, _ = feature_book("exposure_nse.xml", seed=0, sizes=(0,))
    inputs = inputs.with_book(["NIF:F:20240328"], [50.0])
    after = span_what_if_arrays(
        inputs, ["main"] * 2, [0, 1], ["NIF:C:20240328:20000", "NIF:F:20240328"], [-50.0, -50.0]
    )
    full = span_margin(inputs.with_book(["NIF:F:20240328", "NIF:C:20240328:20000"], [50.0, -50.0]))
    assert float(after["maintenance"][0]) == pytest.approx(156_650.0, abs=1e-9)  # test_span_inter's figure
    assert float(after["maintenance"][0]) == float(full["maintenance"][0])
    assert float(after["maintenance"][1]) == 0.0  # flat: no risk, no exposure


def test_super_spread_credit_per_trade_in_blocks(tmp_path, monkeypatch):
    """The per-trade super spread credit survives the blocks of a large batch."""
    import marginsim.methods.span.what_if as WI

    inputs, rng = feature_book("inter_spreads.xml", seed=3, tmp_path=tmp_path)
    trades = random_trades(rng, inputs, 60)
    whole = span_what_if_arrays(inputs, *trades)
    assert float(np.abs(whole["super_spread_credit"]).sum()) > 0
    monkeypatch.setattr(WI, "MAX_BLOCK_PAIRS", 7)
    xr.testing.assert_identical(whole, span_what_if_arrays(inputs, *trades))
