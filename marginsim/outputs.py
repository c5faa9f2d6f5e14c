"""A method's output variables, declared once: the Dataset's attrs, the JSON and the tables come from it.

A method lists its result variables as :class:`Output` rows (name, dims, units, description, and
where the variable goes in the JSON contract) in its :class:`~marginsim.registry.MethodSpec`.
:func:`describe` writes ``units``, ``currency`` and ``description`` attrs onto a result from
those rows; :func:`to_plain` and :func:`per_account` turn variables into the nested lists of the
JSON contract; :func:`json_keys` gives a method's JSON keys of one section in declaration order;
:func:`rows_per_account` splits the rows of a ragged dim (plan rows, positions) by account.

Units are text formatted with the result's attrs, so one declaration serves every scenario:
``"{currency}"`` is the reporting currency (``ds.attrs["currency"]``), ``"{base_currency}"`` the
account layer's base currency. A variable whose units are one of these is a money variable (others
say so with ``Output.money``): its ``currency`` attr is set too. :data:`BY_CURRENCY_COORD` marks amounts over a ``currency`` dim, each
in the currency of its coordinate.

This module imports nothing of marginsim: every layer may use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

__all__ = [
    "Output",
    "CURRENCY",
    "BASE_CURRENCY",
    "BY_CURRENCY_COORD",
    "describe",
    "undeclared",
    "to_plain",
    "per_account",
    "rows_per_account",
    "json_keys",
    "account_json",
    "account_table",
    "NEUTRAL_GRID_POINT",
    "base_grid_point",
    "first_nonfinite_money",
    "DUE_MONEY",
    "ATTRIBUTION_OUTPUTS",
    "ATTRIBUTION_COORDS",
    "attribution_json",
    "attribution_table",
]

#: Units of an amount in the reporting currency.
CURRENCY = "{currency}"
#: Units of an amount in the account layer's base currency.
BASE_CURRENCY = "{base_currency}"
#: Units of amounts over a ``currency`` dim: each in the currency of its coordinate.
BY_CURRENCY_COORD = "currency of the `currency` coordinate"


@dataclass(frozen=True)
class Output:
    """One output variable of a method.

    Attributes
    ----------
    name
        The variable's name in the result Dataset.
    dims
        Its dims besides the grid dims (which every variable may carry), e.g. ``("account",
        "group")``.
    units
        Units text, formatted with the result's attrs (``"{currency}"`` is the reporting
        currency); ``"1"`` for a plain number or ratio, ``""`` for a label or a flag.
    description
        One line on what the value is.
    json
        The section of the method's JSON object the variable goes to (``"account"``: a key of
        the account's object; other names are the method's own sections, e.g. SPAN's
        ``"group"``), or ``None`` when the JSON contract does not carry it.
    key
        Its JSON key when that is not ``name``.
    money
        Whether the variable is an amount of money; ``None`` (the default): its units are
        exactly :data:`CURRENCY`, :data:`BASE_CURRENCY` or :data:`BY_CURRENCY_COORD`. Give ``True`` for amounts with
        compound units (``"{currency} per price unit"``) or in a currency another variable names
        (``"contract_currency per contract"``), ``False`` for a rate between currencies.
    """

    name: str
    dims: tuple[str, ...]
    units: str
    description: str
    json: str | None = None
    key: str | None = None
    money: bool | None = None

    @property
    def json_key(self) -> str:
        """The variable's key in the JSON contract."""
        return self.key or self.name

    @property
    def is_money(self) -> bool:
        """Whether the variable is an amount of money (see ``money``)."""
        if self.money is not None:
            return self.money
        return self.units in (CURRENCY, BASE_CURRENCY, BY_CURRENCY_COORD)

    def currency(self, attrs: Mapping[str, Any]) -> str | None:
        """The ``currency`` attr of a money variable: the reporting (or base) currency its units
        name, else its units up to ``" per "`` (a fixed currency such as ``"USD"``, the variable
        or coordinate giving each element's currency); ``None`` for a variable that is not money."""
        if not self.is_money:
            return None
        for placeholder in (CURRENCY, BASE_CURRENCY):
            if placeholder in self.units:
                return placeholder.format(**attrs)
        return self.units.split(" per ")[0]


def describe(ds: xr.Dataset, outputs: Iterable[Output]) -> xr.Dataset:
    """Write each declared variable's ``units``, ``currency`` and ``description`` attrs (in place).

    Parameters
    ----------
    ds
        A method's result; its attrs fill the units' placeholders (``currency``, ...).
    outputs
        The method's declaration; variables it declares that ``ds`` lacks are skipped (optional
        results, such as SPAN's ``scan_loss``).

    Returns
    -------
    xarray.Dataset
        ``ds`` itself.
    """
    for out in outputs:
        if out.name not in ds.variables:
            continue
        attrs = ds.variables[out.name].attrs  # the variable itself: no DataArray built per output
        units = out.units.format(**ds.attrs) if "{" in out.units else out.units
        if units:
            attrs["units"] = units
        currency = out.currency(ds.attrs)
        if currency is not None:
            attrs["currency"] = currency
        attrs["description"] = out.description
    return ds


def undeclared(ds: xr.Dataset, outputs: Iterable[Output]) -> list[str]:
    """Data variables of ``ds`` that ``outputs`` does not declare (a method's contract test)."""
    names = {o.name for o in outputs}
    return [str(v) for v in ds.data_vars if v not in names]


def _lists(arr: np.ndarray) -> Any:
    """Nested lists of Python scalars; NaN -> None."""
    if arr.dtype.kind == "f":
        nan = np.isnan(arr)
        if nan.any():
            obj = arr.astype(object)
            obj[nan] = None
            return obj.tolist()
    return arr.tolist()


def to_plain(da: xr.DataArray, dims: Sequence[str]) -> Any:
    """A number, or nested lists in the order of ``dims`` (grid dims first, then the array's own).

    NaN becomes ``None``; integer and boolean arrays keep their type.
    """
    present = [d for d in dims if d in da.dims]
    rest = [d for d in da.dims if d not in present]
    return _lists(da.transpose(*present, *rest).values)


def per_account(da: xr.DataArray, dims: Sequence[str], dim: str = "account") -> list[Any]:
    """:func:`to_plain` of ``da.isel({dim: i})`` for every ``i``, converted in one pass.

    Parameters
    ----------
    da
        A variable over ``dim`` (and any others).
    dims
        The JSON order of the other dims (grid dims first), as for :func:`to_plain`.
    dim
        The dim to split along.

    Returns
    -------
    list
        One plain value per index of ``dim``.
    """
    present = [d for d in dims if d in da.dims and d != dim]
    rest = [d for d in da.dims if d not in present and d != dim]
    out: list[Any] = _lists(da.transpose(dim, *present, *rest).values)
    return out


def rows_per_account(owner: np.ndarray, accounts: Sequence[Any]) -> list[list[int]]:
    """The rows of a ragged dim (plan rows, positions, ...) that belong to each account.

    Parameters
    ----------
    owner
        The account of each row: an account name, or an index into ``accounts`` when the array
        is of integers (e.g. ``movement_account``, ``position_account``).
    accounts
        The account names, in the order of the ``account`` dim.

    Returns
    -------
    list of list of int
        For each account, the indices of its rows in row order (rows of no listed account are
        left out). Done in one pass: a stable sort of the rows by account.
    """
    owner = np.asarray(owner)
    n = len(accounts)
    if n == 0:
        return []
    if owner.dtype.kind in "iu":
        code = owner.astype(np.int64)
    else:  # names: matched by a binary search in the sorted names
        names = np.asarray(accounts).astype(str)
        key = owner.astype(str)
        order = np.argsort(names, kind="stable")
        at = np.minimum(np.searchsorted(names[order], key), n - 1)
        code = np.where(names[order][at] == key, order[at], -1)
    code = np.where((code >= 0) & (code < n), code, -1)
    rows = np.argsort(code, kind="stable")
    bounds = np.searchsorted(code[rows], np.arange(n + 1)).tolist()
    flat = rows.tolist()
    return [flat[bounds[i] : bounds[i + 1]] for i in range(n)]


def json_keys(outputs: Iterable[Output], section: str) -> list[Output]:
    """The outputs that go to ``section`` of the JSON, in declaration order."""
    return [o for o in outputs if o.json == section]


def account_json(
    ds: xr.Dataset, outputs: Sequence[Output], grid_dims: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """The JSON object of each account: the ``json="account"`` outputs, keyed in declaration order.

    The default JSON writer of a method (:attr:`marginsim.registry.MethodSpec.to_dict`): each
    variable is converted once for every account (:func:`per_account`); a declared variable the
    result does not have (an optional one) is left out.
    """
    columns = {
        o.json_key: per_account(ds[o.name], grid_dims) for o in json_keys(outputs, "account") if o.name in ds
    }
    names = [str(a) for a in ds["account"].values.tolist()]
    return {a: {k: col[i] for k, col in columns.items()} for i, a in enumerate(names)}


def account_table(ds: xr.Dataset, outputs: Sequence[Output], account: str, title: str) -> str:
    """A readable breakdown of one account: each ``json="account"`` output over ``account`` alone,
    at the base point of the grid dims (the default table of a method)."""
    d = ds.sel(account=account)
    note = ""
    gd = [str(g) for g in d.dims if g in d.coords and g != "account"]
    rows = [o for o in json_keys(outputs, "account") if o.name in ds and ds[o.name].dims[:1] == ("account",)]
    grid = [g for g in gd if all(g in ds[o.name].dims for o in rows)]
    if grid:
        point = base_grid_point(ds, grid)
        d = d.isel(point)
        note = "  (grid point " + ", ".join(f"{g}={ds[g].values[i]}" for g, i in point.items()) + ")"
    lines = [f"{title}  account {account}  [{ds.attrs.get('currency', '')}]{note}"]
    for o in rows:
        v = d[o.name]
        if v.ndim:
            continue
        x = v.item()
        text = f"{x:,.2f}" if isinstance(x, float) else str(x)
        lines.append(f"{o.json_key:<30}{text:>20}")
    return "\n".join(lines)


#: The "no change" value of each what-if dim (see :func:`base_grid_point`).
NEUTRAL_GRID_POINT = {"shift": 0.0, "vol_shift": 0.0, "price_scan_scale": 1.0, "vol_scan_scale": 1.0}


def base_grid_point(ds: xr.Dataset, dims: Sequence[str]) -> dict[str, int]:
    """Index of the "no change" point of each grid dim (shift 0, scale 1, step 0), else the first."""
    out = {}
    for dim in dims:
        vals = ds[dim].values
        hit = np.zeros(0, dtype=np.int64)
        if dim in NEUTRAL_GRID_POINT and vals.dtype.kind == "f":
            hit = np.flatnonzero(vals == NEUTRAL_GRID_POINT[dim])
        out[dim] = int(hit[0]) if hit.size else 0
    return out


#: Money outputs that are a number for every account (a NaN there is never "not applicable").
DUE_MONEY = ("maintenance", "initial")


def first_nonfinite_money(ds: xr.Dataset, outputs: Iterable[Output]) -> tuple[str, str] | None:
    """The first money figure of an account that is NaN or infinite, where a number is due.

    An infinity is refused in every money output of the account's JSON object (``json="account"``);
    NaN only in the requirements always due (:data:`DUE_MONEY`: ``maintenance``, ``initial``), as
    other figures use it for "not applicable" (equity without cash, a position not yet open).
    Lazy (dask) variables are left to be checked when they are computed.

    Returns
    -------
    tuple of (str, str) or None
        ``(variable, account)`` (account ``""`` for a variable without an ``account`` dim), or
        ``None`` when every figure due is finite.
    """
    for o in outputs:
        if o.json != "account" or not o.is_money or o.name not in ds.variables:
            continue
        da = ds[o.name]
        if da.chunks is not None or da.dtype.kind != "f":
            continue
        bad = ~np.isfinite(da.values) if o.name in DUE_MONEY else np.isinf(da.values)
        if bad.any():
            account = ""
            if "account" in da.dims:
                row = int(np.argwhere(bad)[0][da.dims.index("account")])
                account = str(ds["account"].values[row])
            return o.name, account
    return None


#: The attribution variables a result gets with ``margin(..., attribution=True)``
#: (:mod:`marginsim.attribution`), per position of the method and grid point.
ATTRIBUTION_OUTPUTS = (
    Output(
        "contribution",
        ("position",),
        CURRENCY,
        "the position's part of its account's maintenance (the parts sum to it; the method's rule)",
    ),
    Output(
        "marginal",
        ("position",),
        CURRENCY,
        "maintenance minus the maintenance of the account without the position (leave-one-out)",
    ),
)

#: The coords of the ``position`` dim of an attribution: JSON key -> coord name.
ATTRIBUTION_COORDS = {
    "account": "attribution_account",
    "contract": "attribution_contract",
    "quantity": "attribution_quantity",
}


def attribution_json(ds: xr.Dataset, grid_dims: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """The ``"attribution"`` list of each account: one object per position of the method, in book
    order, with keys ``position``, ``contract``, ``quantity``, ``contribution`` (``None`` when the
    method has no allocation rule) and ``marginal``; amounts nested over the grid dims.

    Parameters
    ----------
    ds
        A method's result with the attribution variables (:data:`ATTRIBUTION_OUTPUTS`).
    grid_dims
        The JSON order of the grid dims.

    Returns
    -------
    dict
        Account name -> list (an account without positions in the method: an empty list).
    """
    accounts = [str(a) for a in ds["account"].values.tolist()]
    position = ds["position"].values.tolist()
    contract = [str(c) for c in ds[ATTRIBUTION_COORDS["contract"]].values.tolist()]
    quantity = ds[ATTRIBUTION_COORDS["quantity"]].values.astype(float).tolist()
    contribution = (
        per_account(ds["contribution"], grid_dims, dim="position")
        if "contribution" in ds.data_vars
        else [None] * len(position)
    )
    marginal = per_account(ds["marginal"], grid_dims, dim="position")
    rows = rows_per_account(ds[ATTRIBUTION_COORDS["account"]].values, accounts)
    return {
        a: [
            {
                "position": position[i],
                "contract": contract[i],
                "quantity": quantity[i],
                "contribution": contribution[i],
                "marginal": marginal[i],
            }
            for i in rows[j]
        ]
        for j, a in enumerate(accounts)
    }


def attribution_table(ds: xr.Dataset, account: str) -> str:
    """The attribution of one account at the base grid point: its positions sorted by
    contribution (by marginal when the method has no allocation rule), largest first."""
    mine = np.flatnonzero(ds[ATTRIBUTION_COORDS["account"]].values.astype(str) == str(account))
    d = ds.isel(position=mine)
    grid = [g for g in d["marginal"].dims if g != "position"]
    note = ""
    if grid:
        point = base_grid_point(ds, grid)
        d = d.isel(point)
        note = "  (grid point " + ", ".join(f"{g}={ds[g].values[i]}" for g, i in point.items()) + ")"
    has_contribution = "contribution" in d.data_vars
    marginal = d["marginal"].values.astype(float)
    contribution = d["contribution"].values.astype(float) if has_contribution else np.full(mine.size, np.nan)
    key = contribution if has_contribution else marginal
    order = np.lexsort((d["position"].values, -key))
    lines = [
        f"  attribution{note}" + ("" if has_contribution else "  (no allocation rule: marginal only)"),
        f"  {'position':>8}  {'contract':<28}{'quantity':>12}{'contribution':>16}{'marginal':>16}",
    ]
    contracts = d[ATTRIBUTION_COORDS["contract"]].values.astype(str)
    quantities = d[ATTRIBUTION_COORDS["quantity"]].values.astype(float)
    positions = d["position"].values
    for i in order.tolist():
        c = "n/a" if not has_contribution else f"{contribution[i]:,.2f}"
        lines.append(
            f"  {positions[i]:>8}  {contracts[i]:<28}{quantities[i]:>12,g}{c:>16}{marginal[i]:>16,.2f}"
        )
    if has_contribution:
        lines.append(f"  {'sum':>8}  {'':<28}{'':>12}{np.sum(contribution):>16,.2f}")
    return "\n".join(lines)
