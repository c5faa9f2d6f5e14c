"""Margin attribution: which positions make an account's requirement (``margin(..., attribution=True)``).

Per method, account, position and grid point, two figures [reporting currency]:

- ``contribution``: the position's part of the account's ``maintenance`` by the method's
  allocation rule (:attr:`marginsim.registry.MethodSpec.attribution`); the parts of an account's
  positions sum to its maintenance. A method without a rule has none (JSON ``null``; the
  Dataset's ``attribution_note`` attr says so);
- ``marginal``: the maintenance minus the maintenance of the account without the position
  (exact leave-one-out), for every method: the accounts less one position each are margined from
  scratch by the method, as variants of the book (:func:`leave_one_out`,
  :func:`marginsim.variants.margin_variants`).

The attribution goes into each method's result Dataset: variables ``contribution`` and
``marginal`` on the dim ``position`` (the method's positions: those of its hook's answer, else
its own ``position`` dim, else every position of the book), with coords ``attribution_account``,
``attribution_contract`` and ``attribution_quantity``; :meth:`marginsim.MarginResult.to_dict`
writes them as the ``"attribution"`` list of each account and method.

Attribution is per account: a chunked run (``--chunks``, ``--book``) computes it chunk by chunk
of accounts with the margin (:func:`attributed_run`); the numbers are those of one piece.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .errors import InputError
from .model import Inputs, as_names
from .outputs import ATTRIBUTION_COORDS, ATTRIBUTION_OUTPUTS, describe
from .registry import REGISTRY
from .result import MarginResult
from .variants import margin_variants

__all__ = [
    "attribute",
    "attributed_run",
    "method_attribution",
    "leave_one_out",
    "LEAVE_ONE_OUT_ROWS",
]

#: The most book rows margined in one batch of leave-one-out variants [rows].
LEAVE_ONE_OUT_ROWS = 2_000_000

log = logging.getLogger(__name__)


def attribute(result: MarginResult, *, engine: str = "auto") -> MarginResult:
    """Add the attribution of every method of ``result`` to its Dataset (in place).

    Parameters
    ----------
    result
        An in-memory result (:func:`marginsim.margin`).
    engine
        Pricing engine, as for the margin.

    Returns
    -------
    MarginResult
        ``result`` itself.

    Raises
    ------
    InputError
        A chunked (lazy) result: its chunks compute the attribution (:func:`attributed_run`).
    """
    inputs = result.inputs
    if inputs.is_lazy:
        raise InputError(
            "a chunked result gets its attribution chunk by chunk: margin(..., attribution=True)",
            file=inputs.scenario.file,
        )
    for name, ds in list(result.methods.items()):
        t0 = time.perf_counter()
        result.methods[name] = method_attribution(inputs, name, ds, engine=engine)
        log.info("%s: attribution in %.2f s", name, time.perf_counter() - t0)
    return result


def attributed_run(
    run: Callable[..., xr.Dataset], name: str, *, engine: str = "auto"
) -> Callable[..., xr.Dataset]:
    """``run`` (a method's ``run`` with its options bound) followed by :func:`method_attribution`:
    what each chunk of a chunked run computes (attribution is per account, so chunks of accounts
    are independent).

    Parameters
    ----------
    run
        ``run(inputs, **kwargs) -> Dataset`` on in-memory inputs.
    name
        The method's registered name.
    engine
        Pricing engine, as for the margin.

    Returns
    -------
    callable
        ``f(inputs, **kwargs) -> Dataset`` with the attribution variables.
    """
    return partial(_run_and_attribute, run, name, engine)


def _run_and_attribute(
    run: Callable[..., xr.Dataset], name: str, engine: str, inputs: Inputs, **kwargs: Any
) -> xr.Dataset:
    return method_attribution(inputs, name, run(inputs, **kwargs), engine=engine)


def method_attribution(inputs: Inputs, name: str, ds: xr.Dataset, *, engine: str = "auto") -> xr.Dataset:
    """One method's result with its attribution variables (see the module's docstring).

    Parameters
    ----------
    inputs
        The in-memory data model the result was computed from.
    name
        The method's registered name.
    ds
        Its result.
    engine
        Pricing engine, as for the margin.

    Returns
    -------
    xarray.Dataset
        A copy of ``ds`` with ``contribution`` (when the method has an allocation rule) and
        ``marginal`` over ``position`` and the grid dims of ``maintenance``.
    """
    spec = REGISTRY[name]
    book = inputs.book
    if "maintenance" not in ds.data_vars:
        out = ds.copy()
        out.attrs["attribution_note"] = f"method {name!r} has no maintenance: nothing to attribute"
        return out
    contribution = own_marginal = None
    if spec.attribution is not None:
        answer = spec.attribution(inputs, ds, engine=engine)
        if "position" in ds.dims:  # the method's own positions, in its order
            answer = answer.sel(position=ds["position"].values)
        contribution = answer["contribution"]
        own_marginal = answer["marginal"] if "marginal" in answer else None
        positions = contribution["position"].values
    elif "position" in ds.dims:
        positions = ds["position"].values
    else:
        positions = book["position"].values
    rows = pd.Index(book["position"].values).get_indexer(positions)
    if (rows < 0).any():
        raise ValueError(f"{name}: its attribution names positions the book does not hold")
    account = book["account_index"].values[rows].astype(np.int64)
    gd = [d for d in ds["maintenance"].dims if d != "account"]
    if own_marginal is not None:  # the method's own exact leave-one-out (SPAN: linked CCs only)
        marginal = own_marginal.drop_vars("position")
    else:
        marginal = leave_one_out(inputs, name, ds, rows, engine=engine)
    # the names as object arrays of str, as they are (fastpath: no conversion of a million names
    # through pandas' string dtype and back)
    coords = {
        "position": positions,
        ATTRIBUTION_COORDS["account"]: xr.Variable(
            "position",
            np.asarray(as_names(book["account_name"].values), dtype=object)[account],
            fastpath=True,
        ),
        ATTRIBUTION_COORDS["contract"]: xr.Variable(
            "position", np.asarray(book["contract"].values[rows], dtype=object), fastpath=True
        ),
        ATTRIBUTION_COORDS["quantity"]: ("position", book["quantity"].values[rows].astype(float)),
    }
    out = ds.drop_vars([c for c in ATTRIBUTION_COORDS.values() if c in ds.variables])
    out = out.assign_coords(coords)
    out["marginal"] = marginal.transpose("position", *gd).variable
    if contribution is not None:
        out["contribution"] = contribution.transpose("position", *gd).variable
    else:
        out.attrs["attribution_note"] = (
            f"method {name!r} has no allocation rule (MethodSpec.attribution): contribution is absent "
            "(null in the JSON); marginal is the exact leave-one-out"
        )
    return describe(out, ATTRIBUTION_OUTPUTS)


def leave_one_out(
    inputs: Inputs, name: str, ds: xr.Dataset, rows: np.ndarray, *, engine: str = "auto"
) -> xr.DataArray:
    """The maintenance of each position's account minus that of the account without it.

    Every account less one of its positions is a variant of the book
    (:func:`marginsim.variants.margin_variants`: it inherits its account's cash, funding and
    settings), margined from scratch by the method, in batches of at most
    :data:`LEAVE_ONE_OUT_ROWS` rows (a variant of an account of n positions has n - 1 rows).

    Parameters
    ----------
    inputs
        The in-memory data model.
    name
        The method.
    ds
        Its result on ``inputs`` (``maintenance``: dims ``account`` and grid dims).
    rows
        ``(N,)`` rows of ``inputs.book`` (position indices) to leave out, one variant each.
    engine
        Pricing engine.

    Returns
    -------
    xarray.DataArray
        Dims ``position`` (length N, no coord) and the grid dims of ``maintenance``
        [reporting currency].
    """
    book = inputs.book
    base = ds["maintenance"].transpose("account", ...)
    gd = [str(d) for d in base.dims[1:]]
    gshape = tuple(base.sizes[d] for d in gd)
    n_g = int(np.prod(gshape)) if gshape else 1
    account = book["account_index"].values.astype(np.int64)[rows]
    names = np.asarray(as_names(book["account_name"].values))
    size = np.bincount(book["account_index"].values, minlength=book.sizes["account"])
    cost = np.cumsum(np.maximum(size[account] - 1, 1))  # rows of the variants, in order
    cuts = np.searchsorted(
        cost, np.arange(LEAVE_ONE_OUT_ROWS, int(cost[-1]) if cost.size else 0, LEAVE_ONE_OUT_ROWS)
    )
    without = np.zeros((rows.size, n_g))
    for batch in np.split(np.arange(rows.size), cuts):  # batches of variants, not positions
        if not batch.size:
            continue
        res = margin_variants(inputs, names[account[batch]], drop=rows[batch], methods=[name], engine=engine)
        m = res[name]["maintenance"]
        for d, n in zip(gd, gshape):
            if d not in m.dims:
                m = m.expand_dims({d: n})
        without[batch] = m.transpose("account", *gd).values.reshape(batch.size, n_g)
    base_at = pd.Index(np.asarray(ds["account"].values).astype(str)).get_indexer(names.astype(str))
    marginal = base.values.reshape(base.sizes["account"], n_g)[base_at[account]] - without
    return xr.DataArray(marginal.reshape((rows.size, *gshape)), dims=("position", *gd))
