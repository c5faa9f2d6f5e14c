"""The scenario file: pydantic models, loading and validation.

A scenario file (YAML) describes a study input: the book, the market and the parameters of
each method. Its keys are fixed by ``spec/scenario-format.md``; unknown keys are errors. Every
validation problem becomes an :class:`~marginsim.errors.InputError` naming the file, the key path
and the problem.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from .errors import InputError
from .params import MAX_AMOUNT, Currency, Date, NonNegFloat, PosFloat, Rate, Vol
from .params import StrictModel as _Model
from .params.history import HistoryParams
from .params.monte_carlo import MonteCarloParams
from .positions import PositionTable, read_positions_file
from .registry import REGISTRY

__all__ = [
    "Underlying",
    "Contract",
    "Position",
    "GridParams",
    "ScenarioFile",
    "scenario_model",
    "load_scenario",
    "parse_scenario",
    "scenario_json_schema",
    "yaml_loader",
]


class Underlying(_Model):
    """One risk factor (a stock, an index, a futures price) in ``market``."""

    price: PosFloat = Field(description="Current price [price units of the underlying].")
    vol: Vol | None = Field(None, description="Annualised implied volatility [decimal].")
    rate: Rate = Field(0.0, description="Continuously compounded interest rate [decimal per year].")
    dividend_yield: Rate = Field(0.0, description="Continuous dividend yield [decimal per year].")
    currency: Currency | None = Field(
        None, description="Currency of the price; default: the file's currency."
    )
    market_cap: Annotated[float, Field(ge=1.0, le=MAX_AMOUNT)] | None = Field(
        None,
        description="Market capitalisation [USD], 1 to 1e15 (the single-name moves divide by it).",
    )
    shares_outstanding: PosFloat | None = Field(None, description="Shares outstanding [shares].")
    adv: NonNegFloat | None = Field(None, description="Average daily volume [shares].")
    domicile: str | None = Field(None, description="ISO country of the issuer.")
    sector: str | None = Field(None, description="Sector, e.g. real_estate.")
    listing: str | None = Field(None, description="ISO country of the listing exchange.")
    product_class: Literal["equity", "broad_index_high_cap", "broad_index", "sector_index"] | None = None
    cfd_class: (
        Literal[
            "major_fx",
            "nonmajor_fx",
            "gold",
            "major_index",
            "commodity",
            "nonmajor_index",
            "individual_equity",
            "crypto",
        ]
        | None
    ) = None


class Contract(_Model):
    """One instrument definition in ``contracts``."""

    type: Literal["future", "call", "put", "stock", "cfd"]
    underlying: str = Field(description="Key of the underlying in `market`.")
    multiplier: PosFloat = Field(1.0, description="Currency amount per point of price per contract.")
    expiry: Date | None = Field(None, description="Expiry (futures and options).")
    price: NonNegFloat | None = Field(
        None, description="Futures settlement or option premium [price units]; else from market and model."
    )
    group: str | None = Field(
        None, description="SPAN combined commodity / class group; default: the underlying."
    )
    option_on: Literal["future", "spot"] | None = Field(
        None,
        description="Options: `future` (Black-76) or `spot` (Black-Scholes with dividend yield). Required.",
    )
    exercise: Literal["european", "american"] = "european"
    premium_style: Literal["premium", "futures"] = Field(
        "premium",
        description="Options: `premium` (paid up front, counts in net option value) or `futures` (futures-style).",
    )
    vol: Vol | None = Field(None, description="This option's implied vol [decimal].")
    strike: PosFloat | None = Field(None, description="Options: strike [price units].")
    risk_array: list[float] | None = Field(
        None,
        description="SPAN convention: losses of one long contract per scenario, positive = loss [currency].",
    )
    composite_delta: float | None = Field(None, description="Composite delta given with a risk array.")

    @model_validator(mode="after")
    def _check_kind(self) -> Contract:
        if self.type in ("call", "put"):
            if self.strike is None:
                raise ValueError(f"an option ({self.type}) needs a strike")
            if self.expiry is None:
                raise ValueError(f"an option ({self.type}) needs an expiry")
            if self.option_on is None:
                raise ValueError("an option needs option_on: future (Black-76) or spot (Black-Scholes)")
        else:
            for key in ("strike", "option_on", "vol"):
                if getattr(self, key) is not None:
                    raise ValueError(f"`{key}` is for options only, not for a {self.type}")
        if self.composite_delta is not None and self.risk_array is None:
            raise ValueError("composite_delta is given with a risk_array only")
        return self


class Position(_Model):
    """One row of the book."""

    contract: str
    quantity: float = Field(description="Signed number of contracts or shares; long positive.")
    account: str = "main"
    open_price: PosFloat | None = None
    opened: dt.datetime | None = None


class GridParams(_Model):
    """What-if dims; every method broadcasts over them."""

    shift: list[float] | dict[str, list[float]] | None = Field(
        None, description="Relative move of every underlying (or per underlying): adds dim `shift`."
    )
    vol_shift: list[float] | None = Field(
        None, description="Absolute move of every vol: adds dim `vol_shift`."
    )
    price_scan_scale: list[PosFloat] | None = Field(
        None, description="Scale of every SPAN price scan range: adds dim `price_scan_scale`."
    )
    vol_scan_scale: list[NonNegFloat] | None = Field(
        None, description="Scale of every SPAN vol scan range: adds dim `vol_scan_scale`."
    )
    path: dict[str, list[PosFloat]] | None = Field(
        None, description="Price path per underlying: adds dim `step`."
    )
    monte_carlo: MonteCarloParams | None = Field(
        None, description="Simulated price paths: adds dims `step` and `path` (not with `path`)."
    )

    @model_validator(mode="after")
    def _check(self) -> GridParams:
        if isinstance(self.shift, dict):
            lengths = {len(v) for v in self.shift.values()}
            if len(lengths) > 1:
                raise ValueError("every underlying's shift list must have the same length")
        if self.path is not None:
            lengths = {len(v) for v in self.path.values()}
            if len(lengths) > 1:
                raise ValueError("every underlying's path must have the same number of steps")
            if lengths == {0}:
                raise ValueError("a path needs at least one step")
        for name in ("shift", "vol_shift", "price_scan_scale", "vol_scan_scale"):
            v = getattr(self, name)
            vals = list(v.values())[0] if isinstance(v, dict) and v else v
            if vals is not None and len(vals) == 0:
                raise ValueError(f"grid {name} is empty")
        return self


class ScenarioFile(_Model):
    """A whole scenario file (see ``spec/scenario-format.md``).

    This class holds the keys every scenario has; the method sections (``span``,
    ``portfolio_margin``, ``cfd``, ``account``, and those of methods registered from outside) and
    the names allowed in ``methods`` come from :data:`marginsim.registry.REGISTRY`: a validated
    scenario is an instance of :func:`scenario_model`, a subclass with one optional field per
    registered method (its ``params_model``). ``sc.span`` etc. are those fields.
    """

    name: str = Field(min_length=1, description="Used in report titles and file names.")
    description: str = ""
    as_of: dt.date | dt.datetime = Field(
        description=(
            "Valuation date (YYYY-MM-DD), or date and time (YYYY-MM-DDTHH:MM[:SS][+HH:MM]) where "
            "deadlines and order times matter; quoted or not, a value with a time is a time."
        )
    )
    currency: Currency = "USD"
    max_amount: PosFloat = Field(
        MAX_AMOUNT,
        description=(
            "Largest value of one contract (multiplier x price x FX, at every grid price) and of one "
            "position (x |quantity|) accepted [reporting currency]; a guard against overflow."
        ),
    )
    fx: dict[Currency, PosFloat] = Field(
        default_factory=dict, description="Value of one unit of each currency in `currency`."
    )
    methods: list[str] | None = Field(
        None, description="Methods to run (registered names); default: every method the book needs."
    )
    market: dict[str, Underlying] = Field(default_factory=dict)
    contracts: dict[str, Contract] = Field(default_factory=dict)
    positions: list[Position] = Field(default_factory=list)
    positions_file: str | None = Field(
        None,
        description="A CSV or Parquet file of the positions, instead of `positions` (not both): columns "
        "`account`, `contract`, `quantity` (required) and `open_price`, `opened` (optional), one row per "
        "position; relative to the scenario file's folder. For large books: read by column, validated by "
        "column (a problem names the row: in a CSV file the header is row 1, in Parquet the first "
        "position is row 1).",
    )
    grid: GridParams | None = None
    history: HistoryParams | None = Field(
        None,
        description="Daily closes (and implied vols) per underlying: the VaR method's scenarios and the backtest.",
    )
    _file: str | None = PrivateAttr(None)
    # the positions as columns: read from `positions_file`, or built from `positions` (then
    # _table_of is that list, so a copy with other positions builds its own)
    _table: PositionTable | None = PrivateAttr(None)
    _table_of: list | None = PrivateAttr(None)

    if TYPE_CHECKING:  # the method sections are fields of scenario_model(): any attribute is allowed

        def __getattr__(self, name: str) -> Any: ...

    @field_validator("as_of", mode="before")
    @classmethod
    def _date_or_time(cls, v: Any) -> Any:
        # a string with a time is a time, as YAML reads an unquoted one (pydantic's union would
        # take the date of '2026-03-10T00:00:00'); numbers are not dates
        if isinstance(v, dt.date):
            return v
        if isinstance(v, str):
            text = v.strip()
            try:
                if len(text) == 10:
                    return dt.date.fromisoformat(text)
                return dt.datetime.fromisoformat(text)
            except ValueError as e:
                raise ValueError(
                    f"not a valid date or date and time ({e}): give YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[+HH:MM]"
                ) from None
        raise ValueError(
            f"must be a valid date (YYYY-MM-DD) or date and time (YYYY-MM-DDTHH:MM:SS[+HH:MM]), not {v!r}"
        )

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # by value: the class is made from the registry, so it is rebuilt, not looked up by name;
        # a positions file's table goes with it (it is not read again)
        table = self._table if self.positions_file is not None else None
        return (_rebuild, (self.model_dump(mode="python", exclude_unset=True), self._file, table))

    def section(self, name: str) -> Any:
        """The method section ``name`` (its params model), or ``None`` when the file has none."""
        return getattr(self, name, None)

    def holds(self, kind: Callable[[Contract], bool]) -> bool:
        """Whether a position of the book is in a contract of the file for which ``kind`` is true
        (a method's ``applies``: e.g. ``sc.holds(lambda c: c.type == "cfd")``)."""
        held = self.position_table().held
        return any(kind(c) for name, c in self.contracts.items() if name in held)

    def position_table(self) -> PositionTable:
        """The book as columns (account, contract, quantity, ...): from ``positions_file`` when the
        file names one (read when the scenario is loaded), else from ``positions``. What the data
        model and the methods read (never the list of ``positions``)."""
        if self.positions_file is not None:
            if self._table is None:  # a scenario built in Python, never parsed: read it now
                self._table = read_positions_file(
                    self.positions_file, scenario_file=self._file, known_contracts=self._known_contracts()
                )
            return self._table
        table = self._table
        if table is None or self._table_of is not self.positions or table.file != self._file:
            table = self._table = PositionTable.from_positions(self.positions, file=self._file)
            self._table_of = self.positions
        return table

    def with_position_rows(self, rows: Any) -> ScenarioFile:
        """A copy of this scenario whose book is its positions ``rows`` (indices, in this order)."""
        table = self.position_table().take(rows)
        if self.positions_file is not None:
            sc = self.model_copy()
        else:
            sc = self.model_copy(update={"positions": [self.positions[int(i)] for i in rows]})
            sc._table_of = sc.positions
        sc._table = table
        sc._file = self._file
        return sc

    def _known_contracts(self) -> Any:
        """Names a position may hold: the file's ``contracts``, or None: any (a clearing-house
        file of ``span.source`` defines contracts of its own, checked when it is read)."""
        span = self.section("span")
        if span is not None and getattr(span, "source", None) is not None:
            return None
        return self.contracts.keys()

    @property
    def file(self) -> str | None:
        """The file this scenario was read from, if any."""
        return self._file

    def referenced_files(self) -> dict[str, Path]:
        """The files this scenario reads besides itself, by key path: ``positions_file``,
        ``span.source`` and ``history.file`` when given, relative paths resolved against the
        scenario file's folder (what a report's provenance fingerprints)."""
        base = None if self._file is None else Path(self._file).parent
        span = self.section("span")
        named = {
            "positions_file": self.positions_file,
            "span.source": getattr(span, "source", None),
            "history.file": None if self.history is None else self.history.file,
        }
        out: dict[str, Path] = {}
        for key, name in named.items():
            if name is not None:
                path = Path(name).expanduser()
                out[key] = base / path if base is not None and not path.is_absolute() else path
        return out

    @property
    def as_of_date(self) -> dt.date:
        """The valuation date (the date part of ``as_of``)."""
        return self.as_of.date() if isinstance(self.as_of, dt.datetime) else self.as_of

    def fx_rate(self, currency: str, *, key_path: str = "fx") -> float:
        """Value of one unit of ``currency`` in the reporting currency; a missing rate is an error."""
        if currency == self.currency:
            return 1.0
        try:
            return float(self.fx[currency])
        except KeyError:
            raise InputError(
                f"no FX rate for {currency} (needed at {key_path}); add fx: {{{currency}: ...}}",
                file=self._file,
                key_path="fx",
            ) from None

    def cash_amount(self, value: float | Mapping[str, float], *, key_path: str) -> float:
        """An amount of cash in the reporting currency (a ``Money`` field of the file).

        Parameters
        ----------
        value
            An amount in the reporting currency, or amounts by currency (converted with ``fx``).
        key_path
            Where the amount is in the file (named by a missing FX rate's error).

        Returns
        -------
        float
            The amount [reporting currency].
        """
        if isinstance(value, Mapping):
            return float(sum(v * self.fx_rate(c, key_path=f"{key_path}.{c}") for c, v in value.items()))
        return float(value)


_MODELS: dict[tuple[int, frozenset[str] | None], type[ScenarioFile]] = {}


def scenario_model(sections: Iterable[str] | None = None) -> type[ScenarioFile]:
    """The scenario-file model of the methods registered now (cached per registry contents).

    A subclass of :class:`ScenarioFile` named ``ScenarioFile`` with, after the common keys, one
    optional field per registered method (``name: params_model | None``), and ``methods`` typed
    as a list of the registered names.

    Parameters
    ----------
    sections
        The keys of the file to validate (its mapping): only the methods whose section is among
        them get their params model (and their package imported); the others' fields accept
        nothing but their default ``None``. ``None``: every method's model (the JSON schema).
    """
    version = REGISTRY.contents_version()
    names = tuple(REGISTRY)
    used = None if sections is None else frozenset(names).intersection(sections)
    model = _MODELS.get((version, used))
    if model is None:
        fields: dict[str, Any] = {
            "methods": (
                list[Literal[names]] | None,  # type: ignore[valid-type]
                Field(None, description="Methods to run; default: every method the book needs."),
            )
        }
        for name in names:
            params = REGISTRY[name].params_model | None if used is None or name in used else None
            fields[name] = (params, None)
        model = create_model("ScenarioFile", __base__=ScenarioFile, __module__=__name__, **fields)
        model.__doc__ = ScenarioFile.__doc__
        if any(v != version for v, _ in _MODELS):
            _MODELS.clear()
        _MODELS[version, used] = model
    return model


def _rebuild(data: dict[str, Any], file: str | None, table: PositionTable | None = None) -> ScenarioFile:
    sc = scenario_model(data).model_validate(data)
    sc._file = file
    sc._table = table
    return sc


def _cross_check(sc: ScenarioFile) -> list[tuple[tuple[str | int, ...], str]]:
    """Checks that span several sections; returns (key path, problem) pairs."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    if sc.positions_file is not None and "positions" in sc.model_fields_set:
        problems.append((("positions_file",), "give `positions` or `positions_file`, not both"))
    for name, c in sc.contracts.items():
        if c.underlying not in sc.market:
            problems.append((("contracts", name, "underlying"), f"unknown underlying {c.underlying!r}"))
        if c.type in ("call", "put") and c.expiry is not None and c.expiry < sc.as_of_date:
            problems.append(
                (
                    ("contracts", name, "expiry"),
                    f"expiry {c.expiry} is before as_of {sc.as_of_date} for an open option",
                )
            )
    held = set()
    for i, p in enumerate(sc.positions):
        if p.contract not in sc.contracts:
            span = sc.section("span")  # a clearing-house file defines contracts of its own
            if span is None or getattr(span, "source", None) is None:
                problems.append((("positions", i, "contract"), f"unknown contract {p.contract!r}"))
        else:
            held.add(p.contract)
    for name, u in sc.market.items():
        ccy = u.currency or sc.currency
        if ccy != sc.currency and ccy not in sc.fx:
            problems.append((("market", name, "currency"), f"no FX rate for {ccy} in `fx`"))
    if sc.grid is not None:
        for key in ("shift", "path"):
            v = getattr(sc.grid, key)
            if isinstance(v, dict):
                for und in v:
                    if und not in sc.market:
                        problems.append((("grid", key, und), f"unknown underlying {und!r}"))
    if sc.history is not None and (
        sc.section("span") is None or getattr(sc.section("span"), "source", None) is None
    ):
        for key in ("columns", "vol_columns"):
            for und in getattr(sc.history, key) or {}:
                if und not in sc.market:
                    problems.append((("history", key, und), f"unknown underlying {und!r}"))
    problems.extend(_time_zone_check(sc))
    for name in REGISTRY:  # (a method without a section in the file is not imported to ask)
        spec = REGISTRY[name] if sc.section(name) is not None else None
        if spec is not None and spec.check is not None:
            problems.extend(spec.check(sc))
    if not problems:  # needs known underlyings and FX rates
        problems.extend(_amount_check(sc))
    return problems


def _time_zone_check(sc: ScenarioFile) -> list[tuple[tuple[str | int, ...], str]]:
    """Order times (``positions[].opened``) are compared with ``cfd.step_times``: both with a time
    zone or both without (a naive time next to a zoned one has no single meaning)."""
    cfd = sc.section("cfd")
    times = getattr(cfd, "step_times", None)
    if not times:
        return []
    zoned = times[0].tzinfo is not None
    opened = [(i, p.opened) for i, p in enumerate(sc.positions) if p.opened is not None]
    bad = [i for i, t in opened if (t.tzinfo is not None) != zoned]
    if not bad:
        return []
    which = "with" if zoned else "without"
    return [
        (
            ("positions", bad[0], "opened"),
            f"order time {opened[[i for i, _ in opened].index(bad[0])][1].isoformat()} and cfd.step_times "
            f"(given {which} a time zone) must all have a time zone or all have none",
        )
    ]


def _amount_check(sc: ScenarioFile) -> list[tuple[tuple[str | int, ...], str]]:
    """The value of one contract (multiplier x price x FX, at the market and at every price of
    ``grid.shift`` / ``grid.path``) and of each position of ``positions:`` (x |quantity|) must be
    finite and at most ``max_amount`` [reporting currency]: products of values that are each finite
    (``price: 1e308``) must not overflow inside a method. (The rows of a ``positions_file`` are
    checked when it is read: :func:`_position_amount_error`.)"""
    if not sc.contracts:
        return []
    limit = sc.max_amount
    names, unit, unit_grid, grid_key = _contract_values(sc)
    ccy = sc.currency
    bad = np.flatnonzero(~(unit <= limit))
    if bad.size:
        i = int(bad[0])
        return [
            (
                ("contracts", names[i]),
                f"the value of one contract (multiplier x price x FX) is {unit[i]:g} {ccy}, above the "
                f"largest amount accepted (max_amount: {limit:g})",
            )
        ]
    bad = np.flatnonzero(~(unit_grid <= limit))
    if bad.size:
        i = int(bad[0])
        return [
            (
                grid_key[i],
                f"at the grid's highest price, one {names[i]} contract is worth {unit_grid[i]:g} {ccy}, "
                f"above the largest amount accepted (max_amount: {limit:g})",
            )
        ]
    if sc.positions_file is not None or not sc.positions:
        return []
    table = PositionTable.from_positions(sc.positions, file=sc.file)  # columns; not kept on sc
    i, problem = _position_amount_problem(sc, table, names, unit_grid)
    return [] if i < 0 else [(("positions", i), problem)]


def _contract_values(
    sc: ScenarioFile,
) -> tuple[list[str], np.ndarray, np.ndarray, list[tuple[str | int, ...]]]:
    """Per contract of ``sc.contracts``: its name, the value of one contract at the market and at
    the grid's highest price [reporting currency], and the grid key that sets the latter."""
    names = list(sc.contracts)
    cs = [sc.contracts[n] for n in names]
    unds = [sc.market[c.underlying] for c in cs]
    mult = np.array([c.multiplier for c in cs])
    spot = np.array([u.price for u in unds])
    own = np.array([c.price if c.price is not None else 0.0 for c in cs])
    fx = np.array([sc.fx_rate(u.currency or sc.currency) for u in unds])
    grid_level = spot.copy()  # the highest price of each contract's underlying over the grid
    grid_key: list[tuple[str | int, ...]] = [("grid",)] * len(cs)
    g = sc.grid
    if g is not None and g.shift is not None:
        for i, c in enumerate(cs):  # contracts, not positions
            moves = g.shift.get(c.underlying, [0.0]) if isinstance(g.shift, dict) else g.shift
            with np.errstate(over="ignore"):
                grid_level[i] = spot[i] * max(1.0, 1.0 + max(moves))
            grid_key[i] = ("grid", "shift", c.underlying) if isinstance(g.shift, dict) else ("grid", "shift")
    if g is not None and g.path is not None:
        for i, c in enumerate(cs):
            if c.underlying in g.path:
                grid_level[i] = max(grid_level[i], max(g.path[c.underlying]))
                grid_key[i] = ("grid", "path", c.underlying)
    with np.errstate(over="ignore", invalid="ignore"):
        unit = mult * np.maximum(spot, own) * fx
        unit_grid = mult * np.maximum(grid_level, own) * fx
    return names, unit, unit_grid, grid_key


def _position_amount_problem(
    sc: ScenarioFile, table: PositionTable, names: list[str], unit_grid: np.ndarray
) -> tuple[int, str]:
    """The first position of ``table`` whose notional (|quantity| x the value of one contract at
    the grid's highest price) is not finite or above ``max_amount``: its index and the problem
    (``-1``: none). Contracts not in ``names`` (a clearing-house file's) are not counted here."""
    import pandas as pd  # only here: a book's contract column, hashed once (1,000,000 rows: ~0.1 s)

    codes, held = pd.factorize(table.contract)
    where = {n: i for i, n in enumerate(names)}
    k = np.array([where.get(n, -1) for n in held], dtype=np.int64)[codes]  # over held contracts
    with np.errstate(over="ignore", invalid="ignore"):
        notional = np.abs(table.quantity) * np.where(k >= 0, unit_grid[k], 0.0)
    bad = np.flatnonzero(~(notional <= sc.max_amount))
    if not bad.size:
        return -1, ""
    i = int(bad[0])
    return i, (
        f"the position's notional (|quantity| x multiplier x price x FX) is {notional[i]:g} "
        f"{sc.currency}, above the largest amount accepted (max_amount: {sc.max_amount:g})"
    )


def _position_amount_error(sc: ScenarioFile, table: PositionTable) -> InputError | None:
    """:func:`_position_amount_problem` of a ``positions_file`` as the error naming its row."""
    if not sc.contracts or not len(table):
        return None
    names, _, unit_grid, _ = _contract_values(sc)
    i, problem = _position_amount_problem(sc, table, names, unit_grid)
    return None if i < 0 else table.error(i, problem, "quantity")


def _explain(errors: list[Any], data: Any) -> tuple[tuple[str | int, ...], str]:
    """The key path and message of a pydantic validation error, in the user's terms.

    Of the errors of a union's branches (``cash: 100`` against ``float | dict``), the one of the
    branch whose type matched is kept (a constraint failed there), else the first error. The key
    path keeps the user's keys only (pydantic adds union branches and validator names); integers
    that are keys of a mapping (``market: {12: ...}``) render as keys, not list indices.
    """
    err = next((x for x in errors if not x["type"].endswith("_type")), errors[0])
    raw = tuple(
        x for x in err["loc"] if not (isinstance(x, str) and x.startswith(("function-", "constrained-")))
    )
    # pydantic reports union branches as extra location parts: keep the user's keys only
    raw = tuple(x for x in raw if not (isinstance(x, str) and ("[" in x or x in ("list", "dict", "float"))))
    loc: list[str | int] = []
    node = data
    for j, x in enumerate(raw):
        if isinstance(x, str) and isinstance(node, Mapping) and x not in node and j < len(raw) - 1:
            continue  # a tagged union's branch (`margin: {type: fixed}` -> fixed): not a key of the file
        loc.append(str(x) if isinstance(x, int) and isinstance(node, Mapping) else x)
        try:
            node = node[x]
        except (KeyError, IndexError, TypeError):
            node = None
    msg = err["msg"]
    value = err.get("input")
    limit = (err.get("ctx") or {}).get("le", (err.get("ctx") or {}).get("ge"))
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "missing required key"
    elif err["type"] == "finite_number":
        shown = value if isinstance(value, str) else _number(value)
        msg = f"must be a finite number (got {shown})"
    elif isinstance(limit, float) and abs(limit) == MAX_AMOUNT and isinstance(value, (int, float)):
        msg = f"{_number(value)} is above the largest amount accepted ({MAX_AMOUNT:g} in absolute value)"
    msg = msg.removeprefix("Value error, ")
    return tuple(loc), msg


def _number(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:g}"
    return str(v)


def parse_scenario(data: Any, *, file: str | Path | None = None) -> ScenarioFile:
    """Validate a scenario mapping (as read from YAML) into a :class:`ScenarioFile`.

    Raises
    ------
    InputError
        On the first problem, naming the file, the key path and what is wrong.
    """
    if not isinstance(data, dict):
        raise InputError("a scenario file must be a mapping of keys (name, as_of, market, ...)", file=file)
    try:
        sc = scenario_model(data).model_validate(data)
    except ValidationError as e:
        loc, msg = _explain(e.errors(), data)
        raise InputError(msg, file=file, key_path=loc) from None
    problems = _cross_check(sc)
    if problems:
        path, problem = problems[0]
        raise InputError(problem, file=file, key_path=path)
    if sc.positions_file is not None:
        table = read_positions_file(
            sc.positions_file, scenario_file=file, known_contracts=sc._known_contracts()
        )
        error = _position_amount_error(sc, table)
        if error is not None:
            raise error
        sc._table = table
    return sc


class _LoaderChecks:
    """The checks of the scenario loaders (pure-Python and C): duplicate keys are refused (a silent
    overwrite is a user error; by `_construct_mapping`), and a value its tag cannot make
    (``!!int abc``, ``!!bool maybe``) is reported as a YAML error at the value's line, never as a
    Python exception."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)  # type: ignore[misc]  # a mixin of a yaml Loader
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as e:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"cannot read {node.value!r} as {node.tag.rsplit(':', 1)[-1]} ({e})",
                node.start_mark,
            ) from None


class _UniqueKeyLoader(_LoaderChecks, yaml.SafeLoader):
    """A safe YAML loader that rejects duplicate keys and values their tag cannot make."""


def _construct_mapping(loader: Any, node: yaml.MappingNode, deep: bool = False) -> dict:
    mapping: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, Hashable):
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"a mapping key must be a name or a number, not a {type(key).__name__}",
                key_node.start_mark,
            )
        if key in mapping:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


def _construct_timestamp(loader: _UniqueKeyLoader, node: yaml.ScalarNode) -> Any:
    # an impossible date (2026-02-30, month 13, hour 25) stays text: the field it is given to
    # reports it with its key path
    try:
        return loader.construct_yaml_timestamp(node)
    except (ValueError, AttributeError, OverflowError):
        return loader.construct_scalar(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)
_C_LOADERS: dict[type, type] = {}


def yaml_loader() -> type[Any]:
    """The YAML loader of scenario files: safe, refuses duplicate keys and values their tag cannot
    make; libyaml's C parser (``yaml.CSafeLoader``: 100,000 positions parse with 3.7x less CPU,
    ``benchmarks/positions_file.py``) where PyYAML was built with it, else the pure-Python
    :class:`yaml.SafeLoader`. Same constructors, same results."""
    base = getattr(yaml, "CSafeLoader", None)
    if base is None:
        return _UniqueKeyLoader
    loader: Any = _C_LOADERS.get(base)
    if loader is None:
        loader = type(
            "_CUniqueKeyLoader",
            (_LoaderChecks, base),
            {"__doc__": _UniqueKeyLoader.__doc__},
        )
        loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
        loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)
        _C_LOADERS[base] = loader
    return loader


def _read_yaml(text: str, path: Path) -> Any:
    """The data of a YAML (or JSON) text; any problem is an :class:`InputError` naming ``path``
    (and the line where the parser knows it)."""
    try:
        return yaml.load(text, Loader=yaml_loader())  # noqa: S506 - a (C)SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        if "nesting depth" in problem:  # libyaml's own bound; the pure parser recurses instead
            problem = "lists or mappings nested too deeply"
        raise InputError(f"not valid YAML{where}: {problem}", file=path) from None
    except RecursionError:
        raise InputError("not valid YAML: lists or mappings nested too deeply", file=path) from None


def load_scenario(path: str | Path) -> ScenarioFile:
    """Read and validate a scenario file (YAML or JSON).

    Parameters
    ----------
    path
        The scenario file.

    Returns
    -------
    ScenarioFile
        The validated scenario; ``span.source`` is resolved relative to the file's folder.

    Raises
    ------
    InputError
        If the file is missing, is not valid YAML, or fails validation.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", file=path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the file: {e}", file=path) from None
    sc = parse_scenario(_read_yaml(text, path), file=path)
    span = sc.section("span")
    if span is not None and getattr(span, "source", None) is not None:
        src = Path(span.source)
        if not src.is_absolute():
            src = (path.parent / src).resolve()
        span.source = str(src)
    sc._file = str(path)
    return sc


def scenario_json_schema() -> str:
    """The JSON Schema of the scenario file, as printed by ``marginsim schema``."""
    schema = scenario_model().model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "marginsim scenario file"
    return json.dumps(schema, indent=2, default=str)
