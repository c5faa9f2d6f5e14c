"""The result object a Python user expects (issue 14, point 9): ``MarginResult`` is a mapping of
method -> Dataset, gives a long table per method, writes netCDF-4 / zarr with one group per method
(round trip), and shows itself in a few lines (``repr``) or a small HTML table (Jupyter)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import marginsim
from marginsim import result as result_module
from marginsim.result import MarginResult, netcdf_attrs, open_result_group

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"


@pytest.fixture(scope="module")
def seed() -> MarginResult:
    return marginsim.margin(SCENARIOS / "span_seed_example.yaml")


@pytest.fixture(scope="module")
def mixed() -> MarginResult:
    return marginsim.margin(SCENARIOS / "overview_mixed_book.yaml")


@pytest.fixture(scope="module")
def grid() -> MarginResult:
    return marginsim.margin(SCENARIOS / "span_inter_commodity.yaml")  # grid dim shift (5 points)


@pytest.fixture(scope="module")
def account() -> MarginResult:
    return marginsim.margin(SCENARIOS / "account_hk_margin_call.yaml")  # grid dim step; plan rows


# -- a mapping of method -> Dataset -----------------------------------------------------------------


def test_membership_iteration_and_keys(mixed):
    assert "span" in mixed and "portfolio_margin" in mixed and "account" not in mixed and 0 not in mixed
    assert list(mixed) == ["span", "cfd", "portfolio_margin"] == list(mixed.keys())
    assert len(mixed) == 3
    assert [n for n, _ in mixed.items()] == list(mixed)
    assert all(isinstance(ds, xr.Dataset) for ds in mixed.values())
    assert mixed.get("account") is None and mixed.get("span") is mixed["span"]
    assert dict(mixed) == mixed.methods


def test_unknown_method_is_a_key_error(seed):
    with pytest.raises(KeyError):
        seed["cfd"]
    with pytest.raises(KeyError):
        seed[0]


# -- to_dataframe -----------------------------------------------------------------------------------


def test_dataframe_one_row_per_account(seed):
    df = seed.to_dataframe("span")
    assert len(df) == 1 and df["account"].tolist() == ["main"]
    assert list(df.columns[:1]) == ["account"]
    assert df.loc[0, "maintenance"] == seed.to_dict()["accounts"]["main"]["span"]["maintenance"]
    assert round(df.loc[0, "maintenance"], 2) == 609.40 and df.loc[0, "span_risk"] == 1125.0
    assert "scan_risk" not in df.columns and "risk_array" not in df.columns  # per group / per contract
    assert df.attrs["units"]["maintenance"] == "USD"


def test_dataframe_per_group_rows(seed):
    df = seed.to_dataframe("span", dims=("account", "group"))
    assert df[["account", "group"]].values.tolist() == [["main", "ABC"]]
    assert df.loc[0, "scan_risk"] == 1125.0 and df.loc[0, "active_scenario"] == 14
    assert "maintenance" not in df.columns  # an account-level variable is not per group


def test_dataframe_grid_dims_as_columns(grid):
    ds = grid["span"]
    df = grid.to_dataframe("span")
    assert list(df.columns[:2]) == ["account", "shift"]
    assert len(df) == ds.sizes["account"] * ds.sizes["shift"] == 10
    for row in df.itertuples():
        assert row.maintenance == ds["maintenance"].sel(account=row.account, shift=row.shift).item()


def test_dataframe_accounts_of_several_methods(mixed):
    for method in mixed:
        df = mixed.to_dataframe(method)
        assert sorted(df["account"]) == sorted(mixed.inputs.accounts)
        np.testing.assert_array_equal(
            df.set_index("account").loc[mixed.inputs.accounts, "maintenance"].values,
            mixed[method]["maintenance"].sel(account=mixed.inputs.accounts).values,
        )


# -- files: one group per method --------------------------------------------------------------------


def _assert_round_trip(original: xr.Dataset, back: xr.Dataset) -> None:
    assert set(back.variables) == set(original.variables)
    for name, v in original.variables.items():
        b = back[name]
        assert b.dims == v.dims, name
        if v.dtype.kind in "OU":
            assert b.dtype.kind in "OU" or v.size == 0, (name, b.dtype)  # text: str objects or fixed width
            assert b.values.astype(str).tolist() == v.values.astype(str).tolist(), name
        elif v.dtype.kind == "M":  # times come back in nanoseconds
            np.testing.assert_array_equal(b.values, v.values.astype(b.dtype), err_msg=name)
        else:
            assert b.dtype == v.dtype, (name, b.dtype, v.dtype)
            np.testing.assert_array_equal(b.values, v.values, err_msg=name)
        for key, value in v.attrs.items():
            assert b.attrs[key] == value, (name, key)
    for key, value in original.attrs.items():
        assert back.attrs[key] == value, key


@pytest.mark.parametrize("kind", ["netcdf", "zarr"])
@pytest.mark.parametrize("which", ["mixed", "grid", "account"])
def test_file_round_trip(request, tmp_path, kind, which):
    res = request.getfixturevalue(which)
    path = tmp_path / ("r.nc" if kind == "netcdf" else "r.zarr")
    written = res.to_netcdf(path) if kind == "netcdf" else res.to_zarr(path)
    assert written == path
    for method, ds in res.items():
        _assert_round_trip(ds, open_result_group(path, method))
    root = (
        xr.open_dataset(path, engine="zarr" if kind == "zarr" else None, consolidated=False)
        if kind == "zarr"
        else xr.open_dataset(path)
    )
    assert root.attrs["scenario"] == res.inputs.scenario.name
    assert root.attrs["currency"] == res.inputs.scenario.currency
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary file left


def test_file_attrs_are_made_netcdf_safe(tmp_path, seed):
    res = MarginResult(seed.inputs, {"span": seed["span"].copy()})
    res["span"].attrs.update(flag=True, nothing=None, table={"a": 1, "b": [1, 2]}, names=["x", "y"])
    res["span"]["maintenance"].attrs["binding"] = False
    for path in (res.to_netcdf(tmp_path / "r.nc"), res.to_zarr(tmp_path / "r.zarr")):
        back = open_result_group(path, "span")
        assert back.attrs["flag"] == 1 and back.attrs["nothing"] == ""
        assert json.loads(back.attrs["table"]) == {"a": 1, "b": [1, 2]}
        assert list(back.attrs["names"]) == ["x", "y"]
        assert back["maintenance"].attrs["binding"] == 0
    assert "flag" in res["span"].attrs and res["span"].attrs["flag"] is True  # the result is unchanged


def test_netcdf_attrs():
    import datetime as dt

    got = netcdf_attrs(
        {"a": True, "b": None, "c": {"k": 1}, "d": [1, 2.5], "e": dt.date(2026, 3, 10), "f": "x", "g": 3}
    )
    assert got["a"] == 1 and isinstance(got["a"], np.integer)
    assert (
        got["b"] == ""
        and got["c"] == '{"k": 1}'
        and got["e"] == "2026-03-10"
        and got["f"] == "x"
        and got["g"] == 3
    )
    np.testing.assert_array_equal(got["d"], [1, 2.5])


@pytest.mark.parametrize("kind", ["netcdf", "zarr"])
def test_a_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch, mixed, kind):
    path = tmp_path / ("r.nc" if kind == "netcdf" else "r.zarr")
    getattr(mixed, f"to_{kind}")(path)
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    calls = []

    def broken(ds):
        calls.append(ds.attrs.get("method"))
        if len(calls) == 2:
            raise OSError("disk full")
        return netcdf_safe(ds)

    netcdf_safe = result_module.netcdf_safe
    monkeypatch.setattr(result_module, "netcdf_safe", broken)
    with pytest.raises(OSError, match="disk full"):
        getattr(mixed, f"to_{kind}")(path)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before
    _assert_round_trip(mixed["cfd"], open_result_group(path, "cfd"))


# -- repr and HTML ----------------------------------------------------------------------------------


def test_repr_is_short_and_says_the_headline(seed):
    text = repr(seed)
    assert text == (
        "<MarginResult 'span-seed-example' as of 2026-11-20 [USD]: 1 account\n"
        "  span: maintenance 609.40; initial 609.40>"
    )


def test_repr_of_several_accounts_and_a_grid(grid, mixed):
    text = repr(grid)
    ds = grid["span"]
    total = ds["maintenance"].sel(shift=0.0).sum().item()
    assert "2 accounts" in text and "(grid shift=5; at shift=0)" in text
    assert f"maintenance {total:,.2f}" in text and "(sum of 2 accounts)" in text
    assert len(repr(mixed).splitlines()) == 4 and len(repr(mixed)) < 600


def test_repr_of_a_lazy_result_computes_nothing(seed):
    from marginsim.testing import assert_lazy

    lazy = marginsim.margin(SCENARIOS / "overview_mixed_book.yaml", chunks=1, compute=False)
    with assert_lazy():
        text = repr(lazy)
        html = lazy._repr_html_()
    assert "lazy, not computed" in text and "lazy, not computed" in html


def test_repr_html_table(mixed):
    html = mixed._repr_html_()
    assert html.count("<tr>") == 1 + len(mixed.inputs.accounts) + 1  # header, accounts, all accounts
    for method in mixed:
        for acct in mixed.inputs.accounts:
            value = mixed[method]["maintenance"].sel(account=acct).item()
            assert f"{value:,.2f}" in html
    assert "span<br>maintenance [USD]" in html and len(html) < 5000


def test_repr_html_escapes_names_and_cuts_long_books(seed, monkeypatch):
    sc = {
        "name": "<script>alert(1)</script>",
        "as_of": "2026-11-20",
        "currency": "USD",
        "market": {"ABC": {"price": 100, "currency": "USD"}},
        "contracts": {
            "ABC-FUT": {"type": "future", "underlying": "ABC", "multiplier": 10, "expiry": "2026-12-18"}
        },
        "positions": [{"contract": "ABC-FUT", "quantity": 1, "account": f"<b>{i}</b>"} for i in range(5)],
        "span": {"combined_commodities": {"ABC": {"price_scan": 0.1}}},
    }
    res = marginsim.margin(sc)
    monkeypatch.setattr(result_module, "HTML_MAX_ACCOUNTS", 3)
    html = res._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<b>" not in html and "&lt;b&gt;0&lt;/b&gt;" in html
    assert "... and 2 more accounts" in html
