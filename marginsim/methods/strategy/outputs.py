"""The declared result variables of strategy-based margin (units, JSON sections)."""

from __future__ import annotations

from ...outputs import CURRENCY, Output

__all__ = ["OUTPUTS", "A", "ST"]

A = ("account",)
ST = ("strategy",)
STL = ("strategy", "leg")

# fmt: off
OUTPUTS = (
    Output("initial", A, CURRENCY, "Reg T / CBOE initial requirement at the optimal pairing (the least over every grouping)", json="account"),
    Output("maintenance", A, CURRENCY, "FINRA 4210 / CBOE maintenance requirement at its optimal pairing", json="account"),
    Output("opening_deposit", A, CURRENCY, "initial - proceeds of the short options at their market price: the cash to bring to open the book now", json="account"),
    Output("initial_unpaired", A, CURRENCY, "initial with every position margined alone (no strategy)", json="account"),
    Output("maintenance_unpaired", A, CURRENCY, "maintenance with every position margined alone", json="account"),
    Output("short_option_proceeds", A, CURRENCY, "market value of the short options", json="account"),
    Output("market_value", A, CURRENCY, "long minus short market value of the stocks and options", json="account"),
    Output("equity", A, CURRENCY, "strategy.cash + market value; NaN without cash", json="account"),
    # the comparison with portfolio margin (strategy.comparison.enabled)
    Output("pm_initial", A, CURRENCY, "portfolio margin initial (the portfolio_margin method on the same book)", json="comparison"),
    Output("pm_maintenance", A, CURRENCY, "portfolio margin maintenance", json="comparison"),
    Output("saving", A, CURRENCY, "strategy initial - portfolio margin initial (positive: portfolio margin needs less)", json="comparison"),
    Output("qualifies_for", A, "", "portfolio_margin when equity >= the opening threshold, else strategy; '' without cash", json="comparison"),
    Output("keeps_portfolio_margin", A, "", "equity >= the minimum to keep portfolio margin (1.0 / 0.0; NaN without cash)", json="comparison"),
    Output("choose", A, "", "portfolio_margin when it needs less initial margin and the account qualifies (or no cash is given), else strategy", json="comparison"),
    # the strategies chosen at the base grid point, one row per strategy (and per position left alone)
    Output("strategy_account", ST, "", "account of the row", json="strategies", key="account"),
    Output("strategy_basis", ST, "", "which optimum the row belongs to: initial or maintenance", json="strategies", key="basis"),
    Output("strategy_rule", ST, "", "the rule: a strategy (covered_call, debit_put_spread...) or a position alone (long_stock, uncovered_put...)", json="strategies", key="rule"),
    Output("strategy_units", ST, "1", "units of the strategy (option contracts; shares for a stock alone)", json="strategies", key="units"),
    Output("leg_contract", STL, "", "contract of each leg ('' for no leg)", json="strategies", key="legs"),
    Output("leg_quantity", STL, "1", "signed quantity of each leg [contracts or shares]", json="strategies", key="quantities"),
    Output("strategy_initial", ST, CURRENCY, "initial requirement of the row", json="strategies", key="initial"),
    Output("strategy_maintenance", ST, CURRENCY, "maintenance requirement of the row", json="strategies", key="maintenance"),
)
# fmt: on
