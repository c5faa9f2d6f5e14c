"""Risk-based portfolio margin for stocks and stock/index options (``spec/portfolio-margin.md``).

An xarray wrapper over the numpy kernels of :mod:`marginsim.kernels.portfolio_margin`, in steps:

- :mod:`.book`, :mod:`.groups`: the method's positions and their **class groups** (every stock and
  every option on a spot underlying belongs to the class group of its underlying);
- :mod:`.stresses`, :mod:`.revaluation`: each contract revalued once over one stacked set of
  stresses (dim ``stress``: the ten-point theoretical-value scan, the extreme scan, the
  concentration, single-name and large-position stresses), pnl summed into (account, class group)
  with a sparse membership matrix, so accounts and grid dims are array axes;
- :mod:`.components`: scan, option minimum, extreme, concentration, single-name methods, add-ons;
- :mod:`.requirement`: ``maintenance = max(base, extreme, concentration, single_name) +
  large_position``, with ``base = sum over class groups of max(scan, option minimum)``, and
  ``initial = sum over class groups of ratio x (its part of the binding component + its large
  position charge) + days-to-liquidate add-on``, ratio 1.10 (US) or 1.25 (non-US); equity;
- :mod:`.outputs`, :mod:`.dataset`, :mod:`.report`: the declared result variables, the Dataset,
  the JSON contract and the table.

Futures, CFDs and options on futures are not part of this method (SPAN and the CFD method margin
them).
"""

from __future__ import annotations

import xarray as xr

from ...kernels import pricing
from ...limits import portfolio_margin_memory
from ...model import Inputs
from ...params.portfolio_margin import PortfolioMarginParams
from ...registry import MethodSpec
from ..needs import portfolio_margin_applies
from . import components, report
from .attribution import portfolio_margin_attribution
from .book import pm_book
from .dataset import result_dataset
from .groups import SINGLE_NAME_METHODS
from .outputs import COMPONENTS, OUTPUTS
from .requirement import equity, requirement
from .revaluation import delta_shares, market_of, market_value, stress_pnl
from .stresses import VOL_POINTS, scan_scenario_set, stresses

__all__ = [
    "PortfolioMarginParams",
    "COMPONENTS",
    "OUTPUTS",
    "SINGLE_NAME_METHODS",
    "VOL_POINTS",
    "SPEC",
    "portfolio_margin",
    "portfolio_margin_attribution",
    "applies",
    "scan_scenario_set",
]


#: Whether the book needs portfolio margin: a ``portfolio_margin`` section, or stocks or options on spot.
applies = portfolio_margin_applies


def portfolio_margin(
    inputs: Inputs, params: PortfolioMarginParams | None = None, *, engine: pricing.Engine = "auto"
) -> xr.Dataset:
    """Risk-based portfolio margin of every account of the book.

    Parameters
    ----------
    inputs
        The data model (:func:`marginsim.build_inputs`).
    params
        Method parameters; default: the scenario file's ``portfolio_margin`` section, else the
        defaults of :class:`~marginsim.params.portfolio_margin.PortfolioMarginParams`.
    engine
        Pricing engine: ``"numba"``, ``"numpy"`` or ``"auto"``.

    Returns
    -------
    xarray.Dataset
        Amounts in the scenario's reporting currency, non-negative; every grid dim of the inputs
        is a dim of the result. The variables, their dims, units and meaning are declared in
        :data:`OUTPUTS` (and written as each variable's ``units``, ``currency`` and
        ``description`` attrs):

        - per account: ``maintenance``, ``initial``, the components (:data:`COMPONENTS`),
          ``base``, ``binding`` (``""`` when the requirement is 0), ``single_name_driver``,
          ``concentration_driver`` (dim ``driver_rank``), ``market_value``, and with ``cash``
          (else NaN): ``equity``, ``available_funds``, ``excess_liquidity``,
          ``opening_equity_met``, ``minimum_equity_met`` (1.0 / 0.0);
        - per account and class group (dim ``group``): the group's components and add-ons,
          ``single_name_loss`` (dim ``single_name_method``), ``scan_loss`` (dims ``price_point``,
          ``vol_point``), ``delta_shares``, ``option_contracts``, ``held``;
        - per class group: ``product_class``, scan ranges, ``price_move``, ``initial_ratio``,
          the single-name methods that apply and their moves.

        Lazy (dask-backed) inputs are refused: margin them with :func:`marginsim.margin`, which
        runs the method chunk by chunk.
    """
    inputs.require_in_memory("portfolio_margin")
    sc = inputs.scenario
    params = params or sc.portfolio_margin or PortfolioMarginParams()
    book = pm_book(inputs, params)
    st = stresses(book.groups, params)
    mk = market_of(inputs, book, engine)
    pnl = stress_pnl(inputs, book, mk, st, params, engine)  # (A, C, S, G)
    scan = components.scan(pnl, st, book, params, sc)
    conc = components.concentration(pnl, st, book, params)
    sn = components.single_name(pnl, st, book)
    shares = delta_shares(book, mk, engine)
    add = components.add_ons(pnl, st, book, params, shares, scan.group_base)
    req = requirement(book, scan, conc, sn, add)
    mv = market_value(inputs, book, mk, engine)
    eq = equity(inputs, params, mv)
    return result_dataset(inputs, params, book, scan, conc, sn, add, req, eq, mv, shares)


#: The method's registration (:func:`marginsim.registry.register_method` in :mod:`marginsim.methods`).
SPEC = MethodSpec(
    "portfolio_margin",
    portfolio_margin,
    PortfolioMarginParams,
    to_dict=report.to_dict,
    table=report.table,
    applies=applies,
    outputs=OUTPUTS,
    memory=portfolio_margin_memory,
    attribution=portfolio_margin_attribution,
)
