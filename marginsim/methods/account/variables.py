"""Every result variable of the account layer: dims (besides the grid dims), units, description.

:data:`OUTPUTS` is the one declaration the result's ``units``, ``currency`` and ``description``
attrs come from (:func:`describe`). Units follow :mod:`marginsim.outputs`: ``CURRENCY`` is the
reporting currency, ``BASE_CURRENCY`` the account layer's base currency (USD by default),
``BY_CURRENCY_COORD`` the currency of the variable's ``currency`` coordinate; ``"1"`` a ratio or
a plain number; ``""`` a label, a flag or a code (their meaning is in the description), and the
local times ``call_time``, ``deadline`` and ``grace_end`` (``datetime64``: a ``units`` attr would
clash with xarray's time encoding when a result is stored).

``json`` and ``key`` place a variable in the account's JSON object (:mod:`.report`): the
section is the object it is a key of - ``"account"`` (the account's object), ``"currency_group"``
(``currency_groups.<group>``), ``"currency"`` (``....currencies.<currency>``),
``"forced_conversions"`` (a row per movement), ``"initial_by_source"``, ``"conversion_plan"``,
``"liquidation"`` and ``"liquidation.positions"`` (a row per position closed), ``"interest"`` and
``"interest.currencies"``, ``"eligibility"``, ``"eligibility.positions"`` (keyed by the position's
row) and ``"eligibility.ready_market"`` (keyed by stock). Within a section the keys come in the
order declared here, so the declaration follows the JSON's order.
"""

from __future__ import annotations

from ...outputs import BASE_CURRENCY, BY_CURRENCY_COORD, CURRENCY, Output

__all__ = ["OUTPUTS"]

A = ("account",)
AG = ("account", "currency_group")
AGC = ("account", "currency_group", "currency")
AC = ("account", "currency")
MV = ("movement",)
LQ = ("liquidation",)
P = ("position",)
S = ("stock",)
PER_YEAR = BY_CURRENCY_COORD + " per year"

# fmt: off
OUTPUTS: tuple[Output, ...] = (
    # the account's object (json="account"; its nested objects and the attrs base_currency,
    # conversion_point, liquidation_point are placed by .report)
    Output("equity", A, CURRENCY, "cash + LME profits + futures / CFD variation + stock value; option floating profit and value excluded", json="account"),
    Output("initial", A, CURRENCY, "broker initial margin: exchange initial x (1 + mark-up), never below maintenance", json="account"),
    Output("maintenance", A, CURRENCY, "broker maintenance margin: exchange maintenance x (1 + mark-up)", json="account"),
    Output("risk_ratio", A, "1", "general risk ratio: initial / equity (1 = 100 %); inf when equity <= 0", json="account"),
    Output("maintenance_risk_ratio", A, "1", "maintenance / equity (1 = 100 %); inf when equity <= 0", json="account"),
    Output("state", A, "", "0 normal, 1 margin call, 2 forced liquidation", json="account"),
    Output("deadline", A, "", "margin call: 16:00 same or next business day; forced liquidation: immediate (local time)", json="account"),
    Output("total_base", A, BASE_CURRENCY, "equity in the base currency", json="account"),
    Output("exchange_initial", A, CURRENCY, "exchange (or upstream broker) initial margin", json="account"),
    Output("exchange_maintenance", A, CURRENCY, "exchange (or upstream broker) maintenance margin", json="account"),
    Output("available_funds", A, CURRENCY, "equity - initial", json="account"),
    Output("excess_liquidity", A, CURRENCY, "equity - maintenance", json="account"),
    Output("withdrawable", A, CURRENCY, "min(settled funds, equity - LME profits not due) - initial x (1 + buffer), >= 0", json="account"),
    Output("option_value_excluded", A, CURRENCY, "value of the options held (not counted in equity)", json="account"),
    Output("forced_conversion_needed", A, "", "some currency fails the conversion test or some group the transfer test", json="account"),
    Output("overdue", A, "", "a margin call outstanding after its deadline", json="account"),
    Output("call_time", A, "", "time of the step that raised the outstanding call (local time)", json="account"),
    Output("lme_not_due", A, CURRENCY, "LME profits whose prompt date is after the evaluation date (not withdrawable)", json="account"),
    # per currency group: currency_groups.<group>
    Output("group_base", AG, BASE_CURRENCY, "group base: sum of its currencies at the FX rates", json="currency_group", key="base"),
    Output("group_initial", AG, BASE_CURRENCY, "broker initial margin of the group's positions", json="currency_group", key="initial"),
    Output("group_maintenance", AG, BASE_CURRENCY, "broker maintenance margin of the group's positions", json="currency_group", key="maintenance"),
    Output("group_available", AG, BASE_CURRENCY, "group base - group initial", json="currency_group", key="available_funds"),
    Output("transfer_test_met", AG, "", "group base >= the broker's initial margin of the group", json="currency_group"),
    Output("group_withdrawable", AG, BASE_CURRENCY, "withdrawable from the group, never more than the account's", json="currency_group", key="withdrawable"),
    # per currency group and currency: currency_groups.<group>.currencies.<currency> (when it holds money or a requirement)
    Output("balance", AGC, BY_CURRENCY_COORD, "money per currency group and currency (cash, LME profits, variation, stock value)", json="currency"),
    Output("cash", AGC, BY_CURRENCY_COORD, "cash given per currency group and currency (account.accounts.<name>.cash)", json="currency"),
    Output("currency_exchange_initial", AGC, BY_CURRENCY_COORD, "initial margin required in the currency by the exchange / upstream broker", json="currency", key="exchange_initial"),
    Output("currency_initial", AGC, BY_CURRENCY_COORD, "broker initial margin required in the currency", json="currency", key="initial"),
    Output("conversion_test_met", AGC, "", "balance >= the exchange initial margin required in the currency", json="currency"),
    Output("currency_withdrawable", AGC, BY_CURRENCY_COORD, "withdrawable in the currency, never more than the group's", json="currency", key="withdrawable"),
    Output("fx_base", ("currency",), BASE_CURRENCY + " per unit", "value of one unit of the currency in the base currency"),
    # the forced conversion plan: one row per movement (forced_conversions), and its summary per account
    Output("kind", MV, "", "transfer (between currency groups) or conversion (between currencies)", json="forced_conversions"),
    Output("amount", MV, "currency of `movement_currency`", "amount moved out", money=True, json="forced_conversions"),
    Output("movement_currency", MV, "", "currency moved out", json="forced_conversions", key="currency"),
    Output("from_group", MV, "", "currency group moved out of", json="forced_conversions"),
    Output("to_group", MV, "", "currency group moved into", json="forced_conversions"),
    Output("rate", MV, "target units per source unit", "to_amount / amount", json="forced_conversions"),
    Output("to_currency", MV, "", "currency moved into", json="forced_conversions"),
    Output("to_amount", MV, "currency of `to_currency`", "amount moved in", money=True, json="forced_conversions"),
    Output("movement_rule", MV, "", "rule that made the movement (client: the client's instruction)", json="forced_conversions", key="rule"),
    Output("movement_account", MV, "", "account of the movement"),
    # the initial margin by source of requirement (initial_by_source)
    Output("initial_exchange_rule", A, CURRENCY, "broker initial margin of the positions with exchange-rule margins", json="initial_by_source", key="exchange_rule"),
    Output("initial_span", A, CURRENCY, "broker initial margin of the positions margined by SPAN", json="initial_by_source", key="span"),
    Output("initial_portfolio_margin", A, CURRENCY, "initial margin of the positions margined by portfolio margin", json="initial_by_source", key="portfolio_margin"),
    Output("initial_cfd", A, CURRENCY, "initial margin of the CFD positions", json="initial_by_source", key="cfd"),
    Output("initial_no_loan_value", A, CURRENCY, "long foreign stocks without a ready market: 100 % of their value", json="initial_by_source", key="no_loan_value"),
    Output("conversion_rule", A, "", "rule of the account's forced conversion plan", json="conversion_plan", key="rule"),
    Output("conversion_complete", A, "", "the plan meets every conversion and transfer test", json="conversion_plan", key="complete"),
    Output("conversion_shortfall_before", A, BASE_CURRENCY, "shortfall of the tests before the plan", json="conversion_plan", key="shortfall_before"),
    Output("conversion_shortfall_after", A, BASE_CURRENCY, "shortfall of the tests after the plan", json="conversion_plan", key="shortfall_after"),
    Output("currencies_converted", A, "", "comma-separated currencies the plan converts", json="conversion_plan"),
    # the forced liquidation plan: its summary per account, and one row per position closed
    Output("liquidation_needed", A, "", "the account is in forced liquidation at the decision point", json="liquidation", key="needed"),
    Output("liquidation_complete", A, "", "available funds are >= 0 after the plan", json="liquidation", key="complete"),
    Output("liquidation_contracts", A, "contracts", "contracts the plan closes", json="liquidation", key="contracts"),
    Output("liquidation_fees", A, CURRENCY, "liquidation fees of the plan", json="liquidation", key="fees"),
    Output("liquidation_cash", A, CURRENCY, "cash the options closed bring in", json="liquidation", key="cash_realised"),
    Output("liquidation_realised_pnl", A, CURRENCY, "profit or loss the plan realises", json="liquidation", key="realised_pnl"),
    Output("available_after_liquidation", A, CURRENCY, "available funds after the plan (before it when none is needed)", json="liquidation", key="available_after"),
    Output("liquidation_rounds", A, "1", "rounds of exact re-margining the plan took"),
    Output("liquidation_position", LQ, "", "position number (row of the book)", json="liquidation.positions", key="position"),
    Output("liquidation_contract", LQ, "", "contract closed", json="liquidation.positions", key="contract"),
    Output("liquidation_quantity", LQ, "contracts", "signed quantity held before the liquidation", json="liquidation.positions", key="quantity"),
    Output("close", LQ, "contracts", "contracts closed", json="liquidation.positions"),
    Output("close_price", LQ, "price units", "closing price (options: premium per unit of the underlying)", json="liquidation.positions", key="price"),
    Output("fee", LQ, CURRENCY, "liquidation fees of the contracts closed", json="liquidation.positions"),
    Output("cash_realised", LQ, CURRENCY, "cash an option closed brings in (long: its value; short: minus the buy-back cost)", json="liquidation.positions"),
    Output("realised_pnl", LQ, CURRENCY, "profit or loss realised by the close since the settlement price", json="liquidation.positions"),
    Output("liquidation_account", LQ, "", "account of the position closed"),
    # interest on settled cash, per account and currency (currencies with a settled balance or a short credit)
    Output("net_interest_base", A, BASE_CURRENCY + " per year", "net interest of every currency in the base currency", money=True, json="interest", key="per_year_base"),
    Output("settled_balance", AC, BY_CURRENCY_COORD, "settled cash across currency groups (cash - unsettled)", json="interest.currencies"),
    Output("short_credit", AC, BY_CURRENCY_COORD, "short-sale proceeds: given, else the value of short stocks at settlement prices", json="interest.currencies"),
    Output("credit_interest", AC, PER_YEAR, "tiered credit interest on the positive ordinary balance", money=True, json="interest.currencies"),
    Output("debit_interest", AC, PER_YEAR, "tiered debit interest on the negative ordinary balance", money=True, json="interest.currencies"),
    Output("short_credit_interest", AC, PER_YEAR, "tiered interest on the short-sale credit", money=True, json="interest.currencies"),
    Output("net_interest", AC, PER_YEAR, "credit + short credit - debit interest", money=True, json="interest.currencies", key="net_per_year"),
    Output("net_interest_daily", AC, BY_CURRENCY_COORD + " per day", "net interest / the currency's day basis", money=True, json="interest.currencies", key="net_per_day"),
    Output("day_basis", ("currency",), "days per year", "day-count basis of the currency", json="interest.currencies"),
    # eligibility per account
    Output("opening_threshold_met", A, "", "1 met, 0 not met, -1 not checked (opening assets not given)", json="eligibility"),
    Output("opening_assets_usd", A, "USD", "assets at account opening (NaN: not given)", money=True, json="eligibility"),
    Output("trading_activated", A, "", "1 activated, 0 not, -1 not checked (deposits not given)", json="eligibility"),
    Output("deposits_usd", A, "USD", "deposits that activate trading (NaN: not given)", money=True, json="eligibility"),
    Output("controlled_products_allowed", A, "", "1 allowed, 0 not, -1 not checked (no investor class)", json="eligibility"),
    # eligibility per position (eligibility.positions, keyed by the position's row)
    Output("position_contract", P, "", "contract of the position", json="eligibility.positions", key="contract"),
    Output("position_product", P, "", "product key of account.products the position falls under", json="eligibility.positions", key="product"),
    Output("position_source", P, "", "source of the position's exchange requirement", json="eligibility.positions", key="margin_source"),
    Output("product_controlled", P, "", "the product is of the controlled class", json="eligibility.positions", key="product_class"),
    Output("product_allowed", P, "", "1 allowed, 0 not allowed for the investor class, -1 not checked", json="eligibility.positions"),
    Output("product_net_quantity", P, "contracts", "net quantity of the account in the product", json="eligibility.positions", key="net_quantity"),
    Output("over_position_limit", P, "", "|net quantity| >= the position limit", json="eligibility.positions"),
    Output("reportable", P, "", "|net quantity| >= the reporting level (a large open position)", json="eligibility.positions"),
    Output("position_account", P, "", "index of the position's account (into `account`)"),
    Output("position_limit", P, "contracts", "position limit of the product (NaN: none)"),
    Output("reporting_level", P, "contracts", "reporting level of the product (NaN: none)"),
    # ready-market tests of the foreign stocks held (eligibility.ready_market, when the book holds some)
    Output("ready_listed", S, "", "listed 90 days on a recognised exchange", json="eligibility.ready_market", key="listed_90_days_recognised_exchange"),
    Output("ready_quotes", S, "", "electronic quotes", json="eligibility.ready_market", key="electronic_quotes"),
    Output("ready_volume", S, "", "median daily volume above both minimums", json="eligibility.ready_market", key="volume"),
    Output("ready_free_float", S, "", "free-float capitalisation above the minimum on every day of the window", json="eligibility.ready_market", key="free_float"),
    Output("ready_meets_all", S, "", "meets the four conditions", json="eligibility.ready_market", key="meets_all"),
    Output("in_grace", S, "", "reported failing and inside the grace period", json="eligibility.ready_market"),
    Output("ready_market", S, "", "has a ready market (loan value): meets all, or failing but in its grace period", json="eligibility.ready_market"),
    Output("grace_end", S, "", "last day of the grace period of a failing stock (NaT: not failing)"),
)
# fmt: on
