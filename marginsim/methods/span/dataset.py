"""The SPAN result Dataset, from a margined book (:mod:`.book`) and its plan (:mod:`.plan`).

Per-pair arrays are scattered to the dense (account, group) layout in one allocation; amounts
go to the reporting currency. Attrs (units, currency, description) are written afterwards from
the declaration in :mod:`.outputs`.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ...kernels import span_pairs as SP
from ...model import Inputs, as_names
from .book import _BookMargin
from .plan import _Plan, _ranks

__all__: list[str] = []


def _span_dataset(
    inputs: Inputs,
    plan: _Plan,
    book: xr.Dataset,
    m: _BookMargin,
    out_k: np.ndarray | None,
    out_cc: np.ndarray | None,
) -> xr.Dataset:
    """The result of margining ``book`` on ``plan``: every variable (attrs come from
    :func:`marginsim.outputs.describe`, in :func:`marginsim.methods.span.span_margin`).

    ``out_k`` are the plan indices of the result's contracts, ``out_cc`` those of its combined
    commodities (both in result order); ``None``: every one of the plan, in its order (a plan
    made for this book alone: its arrays go into the result without a copy).
    """
    sc = inputs.scenario
    n_a, n_c, n_g, gshape, gd = book.sizes["account"], plan.n_cc, plan.n_g, plan.gshape, plan.gd
    pairs, fx = m.pairs, m.fx
    n_p = pairs.size
    n_s = plan.risk_array.shape[-1]
    arrays, groups, contracts = plan.arrays, plan.groups, plan.contracts
    acg_dims = ("account", "group", *gd)
    # the result's CCs: column of each pair in the (account, group) layout
    n_out = n_c if out_cc is None else out_cc.size
    dense_index = pairs.account * n_out + (pairs.cc if out_cc is None else _ranks(out_cc, n_c)[pairs.cc])
    every_cc = slice(None) if out_cc is None else out_cc
    ra, cd = arrays["risk_array"].variable, arrays["composite_delta"].variable
    if out_k is None:  # no copy, unless the arrays are the inputs' own (given risk arrays)
        given = inputs.contracts["risk_array"].values
        ra, cd = (v.copy() if np.may_share_memory(v.values, given) else v for v in (ra, cd))
        # the contracts' index variable: its pandas index is reused, not rebuilt from the names
        index = contracts["contract"].variable
        names: xr.Variable | np.ndarray = index if not index.attrs else index.values
        currency = contracts["currency"].values.copy()
        position_contract = m.pos_k
    else:
        ra, cd = ra[out_k], cd[out_k]
        names, currency = contracts["contract"].values[out_k], contracts["currency"].values[out_k]
        position_contract = _ranks(out_k, plan.held.size)[m.pos_k]

    per_pair = {  # (P, G) per pair -> (A, C, grid...), all in one allocation
        "scan_risk": (m.scan_risk * fx, 0.0),
        "active_scenario": (m.active + 1, 1),
        "intra_spread_charge": (m.intra * fx, 0.0),
        "spot_charge": (m.spot * fx, 0.0),
        "inter_spread_credit": (m.credit * fx, 0.0),
        "short_option_minimum": (np.broadcast_to(m.som * fx, (n_p, n_g)), 0.0),
        "risk": (m.risk_cc * fx, 0.0),
        "held": (np.ones(n_p, dtype=bool), False),
    }
    if m.super_credit is not None:  # only with super spreads: results without them keep their variables
        per_pair["super_spread_credit"] = (m.super_credit * fx, 0.0)
    dense = dict(zip(per_pair, SP.to_dense_many(list(per_pair.values()), dense_index, n_a * n_out)))

    def acg(name: str) -> xr.Variable:
        return xr.Variable(acg_dims, dense[name].reshape((n_a, n_out) + gshape))

    def ag(a: np.ndarray) -> xr.Variable:
        return xr.Variable(("account", *gd), a.reshape((n_a,) + gshape))

    coords = {
        "account": as_names(book["account_name"].values, trusted=True),
        "group": np.array(groups.names, dtype=object)[every_cc],
        "scenario": arrays["scenario"].values,
        "contract": names,
        "position": book["position"].values,  # the book's position numbers (SPAN's positions only)
    }
    for d in gd:
        coords[d] = (
            arrays[d].values
            if d in arrays.coords
            else (inputs.market[d].values if d in inputs.market.coords else inputs.grid[d].values)
        )
    data = {
        "maintenance": ag(m.maintenance),
        "initial": ag(m.initial),
        "net_option_value": ag(m.nov),
        "span_risk": ag(m.span_risk),
        **{name: acg(name) for name in per_pair if name != "held"},
        "held": (("account", "group"), dense["held"].reshape(n_a, n_out)),
        "position_account": ("position", m.pos_a),
        "position_contract": ("position", position_contract),
        "risk_array": ra,
        "composite_delta": cd,
        "group_currency": xr.Variable("group", np.array(groups.currency, dtype=object)[every_cc]),
        "group_fx": ("group", groups.fx[every_cc]),
        "rate_class": xr.Variable(
            "group", np.where(plan.initial_class, "initial", "maintenance").astype(object)[every_cc]
        ),
        "contract_currency": xr.Variable("contract", currency, fastpath=True),
    }
    if m.exposure is not None:  # only with span.exposure_margin
        data["exposure_margin"] = ag(np.broadcast_to(m.exposure, (n_a, n_g)).copy())
    if m.loss is not None:
        loss = m.loss if (fx == 1.0).all() else m.loss * fx[..., None]  # (x * 1.0 is x)
        flat = SP.to_dense_many([(loss, 0.0)], dense_index, n_a * n_out)[0]  # (A C, G, S)
        by_scenario = np.moveaxis(flat.reshape(n_a, n_out, n_g, n_s), -1, 2)
        data["scan_loss"] = xr.Variable(
            ("account", "group", "scenario", *gd), by_scenario.reshape((n_a, n_out, n_s) + gshape)
        )
    return xr.Dataset(
        data, coords=coords, attrs={"method": "span", "currency": sc.currency, "scenario": sc.name}
    )
