"""Reports a manager can read: the figures of :mod:`marginsim.plots` and the tables of
:func:`marginsim.studies.report_table` show display names with units, never a result's identifiers;
step axes have integer ticks; coinciding lines are merged, the others told apart; tables have no
empty column and state the grid point they show. Built from results directly (no kernel)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from figure_text import colorbar_titles, leaks, table_text, value_axis_titles, visible_text

import marginsim
from marginsim import plots, studies
from marginsim.labels import display_name, method_name
from marginsim.methods.account import STATE_NAMES
from marginsim.methods.portfolio_margin import COMPONENTS

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
UNIT = re.compile(r"\[[^\]]+\]")


@pytest.fixture(scope="module")
def mixed():
    book = studies.load_book(SCENARIOS / "overview_mixed_book.yaml")
    base, problems = studies.margin_by_method(book)
    by_shift, _ = studies.margin_by_method(
        studies.with_grid(book, shift=[-0.1, 0.0, 0.1]), list(base.methods)
    )
    return base, problems, by_shift


@pytest.fixture(scope="module")
def account():
    return marginsim.margin(SCENARIOS / "account_hk_margin_call.yaml", methods=["account"])


@pytest.fixture(scope="module")
def cfd_mc():
    book = studies.load_book(SCENARIOS / "cfd_seed_example.yaml")
    mc_book, combos = studies.cfd_leverage_book(
        book,
        [0.5, 1.0],
        {"major_fx": 0.08, "crypto": 0.7, "individual_equity": 0.35},
        paths=40,
        steps=3,
        seed=1,
    )
    mc = marginsim.margin(mc_book, methods=["cfd"])["cfd"]
    return marginsim.margin(book, methods=["cfd"])["cfd"], mc, combos


def _figures(mixed, account, cfd_mc):
    """Every figure builder, on the data the notebooks give it."""
    base, _, by_shift = mixed
    span, pm = base["span"], base["portfolio_margin"]
    acct = pm.sel(account="main")
    held = np.flatnonzero(acct["held"].values)
    cur = span.attrs["currency"]
    acc = account["account"]
    path = studies.base_point(
        acc[
            ["risk_ratio", "maintenance_risk_ratio", "state", "deadline", "equity", "initial", "maintenance"]
        ].sel(account="main"),
        keep=("step",),
    )
    path["call"] = path["state"] >= 1
    seed, mc, combos = cfd_mc
    p_close = studies.leverage_grid(mc["close_out_probability"], combos)
    bal = studies.balances_before_after(acc, "main")
    moved = xr.Dataset({method_name(m): ds["maintenance"] for m, ds in by_shift.methods.items()})
    moved = moved.drop_vars([v for v in moved.coords if v not in ("account", "shift")])
    heads = studies.headline(base).rename(columns=method_name, level="method")
    return {
        "risk arrays": plots.risk_array_heatmap(span),
        "waterfall": plots.span_waterfall(span, "main"),
        "lines over shift": plots.lines_over(
            moved, "shift", by="account", title="t", ylabel=f"maintenance [{cur}]", percent_x=True
        ),
        "grouped bars": plots.grouped_bars(
            heads.xs("maintenance", axis=1, level="amount"), title="t", ylabel=f"maintenance [{cur}]"
        ),
        "components": plots.components_bars(pm, COMPONENTS, title="t"),
        "group bars": plots.group_bars(
            acct["concentration_loss_top"].isel(group=held), title="t", ylabel=f"loss [{cur}]"
        ),
        "single name": plots.single_name_heatmap(acct["single_name_loss"].isel(group=held), title="t"),
        "loss grid": plots.loss_grid_heatmap(
            acct["scan_loss"].isel(group=held), pm["price_move"].isel(group=held), title="t"
        ),
        "cfd path": plots.path_figure(
            studies.base_point(
                seed[["equity", "cash", "initial", "maintenance", "deficiency"]].sel(account="main"),
                keep=("step",),
            ),
            ["equity", "initial", "maintenance", "cash"],
            marker="deficiency",
            title="t",
            ylabel="amount [EUR]",
        ),
        "leverage": plots.leverage_heatmap(p_close, title="t", zlabel="probability [%]"),
        "state path": plots.state_path_figure(path, STATE_NAMES, title="t"),
        "account path": plots.path_figure(
            path, ["equity", "initial", "maintenance"], marker="call", title="t", ylabel=f"amount [{cur}]"
        ),
        "balances": plots.balances_bars(
            pd.Series(bal["before_base"].to_numpy(), index=["a", "b", "c"][: len(bal)]),
            pd.Series(bal["after_base"].to_numpy(), index=["a", "b", "c"][: len(bal)]),
            title="t",
            ylabel="balance [USD]",
        ),
    }


def test_no_identifier_in_any_figure_label(mixed, account, cfd_mc):
    for name, fig in _figures(mixed, account, cfd_mc).items():
        assert leaks(visible_text(fig)) == [], name


def test_every_value_axis_and_colour_bar_has_a_unit(mixed, account, cfd_mc):
    for name, fig in _figures(mixed, account, cfd_mc).items():
        for title in value_axis_titles(fig) + colorbar_titles(fig):
            assert UNIT.search(title), f"{name}: {title!r} has no [unit]"


def test_display_names_replace_the_identifiers_users_saw(mixed, cfd_mc):
    base, _, _ = mixed
    pm = base["portfolio_margin"]
    sn = plots.single_name_heatmap(pm.sel(account="main")["single_name_loss"], title="t")
    assert "Hong Kong property" in visible_text(sn) or "Hong Kong property" in sn.layout.xaxis.title.text
    _, mc, combos = cfd_mc
    lev = plots.leverage_heatmap(
        studies.leverage_grid(mc["close_out_probability"], combos), title="t", zlabel="p [%]"
    )
    assert set(lev.data[0].y) == {"major currency pairs", "crypto-assets", "individual equities"}
    assert list(lev.data[0].x) == ["0.5", "1"]  # not 0.500000
    assert (
        display_name("CN_") == "mainland China products"
        and method_name("portfolio_margin") == "portfolio margin"
    )
    assert method_name("flat_rate") == "flat rate"  # a plug-in without an entry
    assert display_name("MICRO") == "MICRO"  # the user's own names are kept


def test_step_axes_have_integer_ticks(account, cfd_mc):
    seed = cfd_mc[0]
    path = studies.base_point(seed[["equity", "initial"]].sel(account="main"), keep=("step",))
    fig = plots.path_figure(path, ["equity", "initial"], title="t")
    assert fig.layout.xaxis.dtick == 1 and fig.layout.xaxis.tickformat == "d"
    acc = account["account"]
    state = studies.base_point(
        acc[["risk_ratio", "maintenance_risk_ratio", "state", "deadline"]].sel(account="main"), keep=("step",)
    )
    fig = plots.state_path_figure(state, STATE_NAMES, title="t")
    assert fig.layout.xaxis2.type == "category" and fig.layout.xaxis2.title.text == "step"
    assert list(fig.data[0].x) == [str(s) for s in acc["step"].values]  # one tick a step: 0, 1, 2 ...


def test_coinciding_lines_are_merged_and_named(cfd_mc):
    seed = cfd_mc[0]
    path = studies.base_point(
        seed[["equity", "cash", "initial", "maintenance"]].sel(account="main"), keep=("step",)
    )
    # the seed file: initial margin = cash = 2,000 EUR on every step
    assert np.array_equal(path["initial"].values, path["cash"].values)
    fig = plots.path_figure(path, ["equity", "initial", "maintenance", "cash"], title="t")
    assert [t.name for t in fig.data] == ["equity", "initial = cash", "maintenance"]


def test_lines_of_accounts_differ_in_dash_and_marker(mixed):
    _, _, by_shift = mixed
    span = by_shift["span"]
    fig = plots.lines_over(span[["maintenance", "initial"]], "shift", by="account", title="t")
    styles = {(t.line.color, t.line.dash, t.marker.symbol) for t in fig.data}
    assert len(styles) == len(fig.data)  # no two lines drawn alike
    dashes = {t.name.split(":")[0]: t.line.dash for t in fig.data}
    assert dashes["main"] != dashes["hedged"]
    # equal series are drawn once: SPAN initial = maintenance (initial ratio 1) on this book
    assert "main: maintenance = main: initial" in [t.name for t in fig.data]


def test_summary_table_has_no_empty_column_and_states_its_grid_point(mixed, cfd_mc):
    base, problems, _ = mixed
    html = studies.report_table(
        studies.summary_table(base, problems), caption="At the file's prices."
    ).to_html()
    heads = table_text(html)
    assert leaks(heads) == []
    assert "note" not in heads  # no grid dim and every method ran: the column was empty
    assert "maintenance" in heads and "SPAN" in heads and "portfolio margin" in heads
    assert "concentration stress" in html  # the binding component by its display name
    seed = cfd_mc[0]
    res = marginsim.margin(SCENARIOS / "cfd_seed_example.yaml", methods=["cfd"])
    table = studies.summary_table(res)
    styled = studies.report_table(
        table, caption="CFD margin.", units={"maintenance": "EUR", "initial": "EUR"}
    )
    assert "set by" not in styled.data.columns  # empty for CFD
    assert styled.caption == "CFD margin. At step 0."
    assert list(styled.data.columns) == ["maintenance [EUR]", "initial [EUR]"]
    assert float(styled.data.iloc[0, 0]) == pytest.approx(
        float(seed["maintenance"].sel(account="main").isel(step=0))
    )


def test_account_summary_shows_the_step_of_its_margin_call(account):
    acc = account["account"]
    state = acc["state"].sel(account="main").values
    call = int(np.flatnonzero(state >= 1)[0])
    assert call == 3  # the file's path: the margin call is raised at step 3
    table = studies.summary_table(account, at={"step": call})
    assert set(table["note"]) == {"step=3"}
    assert table["maintenance"].iloc[0] == pytest.approx(
        float(acc["maintenance"].sel(account="main").isel(step=3))
    )
    styled = studies.report_table(table, caption="At the first margin call.")
    assert styled.caption == "At the first margin call. At step 3."
    assert "account layer" in styled.to_html() and leaks(table_text(styled.to_html())) == []


def test_plan_and_balance_tables_read_in_display_names(account):
    acc = account["account"]
    plan = studies.movements(acc, "main").drop(columns=["movement_account"])
    html = studies.report_table(plan, formats={"rate": "{:.6f}"}).to_html()
    assert leaks(table_text(html), allow_six_decimals=True) == []
    assert "conversions only" in html and "Hong Kong products" in html
    bal = studies.balances_before_after(acc, "main")
    html = studies.report_table(bal, units={"before_base": "USD", "after_base": "USD"}).to_html()
    heads = table_text(html)
    assert "before [USD]" in heads and "currency group" in heads and leaks(heads) == []
