"""Plotly figures of margin results, and an offline renderer for notebooks and HTML reports.

The study notebooks call these builders so that they stay thin and the figures can be tested
without a kernel. Every builder takes result Datasets (or DataArrays) of :func:`marginsim.margin`
and returns a :class:`plotly.graph_objects.Figure`; none loops over grid points, accounts or
positions (the data is already on array axes).

:func:`use_offline_renderer` must run once at the top of a notebook: it embeds plotly.js once
in the notebook's outputs and makes every later figure a ``<div>`` plus a call to the embedded
``Plotly``, with no script from a CDN (plotly's own ``notebook`` renderer adds a MathJax script
from a CDN to every figure, and ``notebook_connected`` loads plotly.js itself from a CDN).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import plotly.io as pio
import xarray as xr
from plotly.io._base_renderers import HtmlRenderer

from .labels import display_name, display_names, method_name, with_unit
from .result import base_point

__all__ = [
    "OFFLINE_RENDERER",
    "OfflineRenderer",
    "use_offline_renderer",
    "risk_array_heatmap",
    "span_waterfall",
    "grid_heatmap",
    "lines_over",
    "grouped_bars",
    "components_bars",
    "group_bars",
    "loss_grid_heatmap",
    "single_name_heatmap",
    "path_figure",
    "leverage_heatmap",
    "state_path_figure",
    "balances_bars",
    "margin_history_figure",
    "position_labels",
    "attribution_waterfall",
    "marginal_vs_contribution",
    "what_if_bars",
    "hedge_heatmap",
]

#: Name of the renderer registered by :func:`use_offline_renderer`.
OFFLINE_RENDERER = "marginsim_offline"

# Loss (red) to gain (blue) colour scale, zero in white.
_DIVERGING = "RdBu_r"
_SEQUENTIAL = "Reds"


class OfflineRenderer(HtmlRenderer):
    """Plotly renderer for notebooks that are exported to HTML and read offline.

    On activation it displays plotly.js once (inline, no network); each figure is then a
    ``<div>`` and a script that calls the global ``Plotly``. No MathJax, no CDN. plotly.js is
    loaded with any AMD loader (``define``) hidden, so that it sets ``window.Plotly`` even in a
    page that has require.js.
    """

    def __init__(self, config: dict | None = None) -> None:
        super().__init__(connected=False, full_html=False, global_init=True, config=config)

    def activate(self) -> None:  # noqa: D102 - plotly's renderer API
        from IPython.display import display_html
        from plotly.offline import get_plotlyjs

        script = (
            "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};"
            "window.__marginsimDefine = window.define; window.define = undefined;</script>\n"
            f"<script>{get_plotlyjs()}</script>\n"
            "<script>window.define = window.__marginsimDefine;</script>"
        )
        display_html(script, raw=True)

    def to_mimebundle(self, fig_dict: dict) -> dict:  # noqa: D102 - plotly's renderer API
        from plotly.io import to_html

        html = to_html(
            fig_dict,
            config={"displaylogo": False, **self.config},
            auto_play=False,
            include_plotlyjs=False,
            include_mathjax=False,
            full_html=False,
            default_width="100%",
            default_height=480,
            validate=False,
        )
        return {"text/html": html}


def use_offline_renderer(*, mimetype: bool = True) -> str:
    """Register :class:`OfflineRenderer` and make it plotly's default renderer.

    Parameters
    ----------
    mimetype
        Also emit plotly's JSON mimetype, which JupyterLab renders natively; HTML export uses the
        ``text/html`` part (with the embedded plotly.js).

    Returns
    -------
    str
        The renderer string now in ``plotly.io.renderers.default``.
    """
    pio.renderers[OFFLINE_RENDERER] = OfflineRenderer()
    default = f"plotly_mimetype+{OFFLINE_RENDERER}" if mimetype else OFFLINE_RENDERER
    pio.renderers.default = default
    return default


def _base_point(da: xr.DataArray, keep: Sequence[str]) -> xr.DataArray:
    """``da`` at the base point of its grid dims (see :func:`marginsim.result.base_point`)."""
    return base_point(da, keep)


def _layout(fig: go.Figure, title: str, **kw) -> go.Figure:
    fig.update_layout(title=title, template="plotly_white", margin={"t": 60, "l": 60, "r": 20, "b": 50}, **kw)
    return fig


def _unit(*objs: xr.DataArray | xr.Dataset) -> str:
    """The unit of the first object that declares one (its ``units`` attr, else its ``currency``)."""
    for obj in objs:
        unit = obj.attrs.get("units") or obj.attrs.get("currency")
        if unit:
            return str(unit)
    return ""


def _integer_axis(fig: go.Figure, axis: str = "x") -> go.Figure:
    """Integer ticks (one per unit at most) on a numeric axis of steps or counts."""
    update = fig.update_xaxes if axis == "x" else fig.update_yaxes
    update(tickformat="d", dtick=1, tick0=0)
    return fig


#: Dash styles, one per value of a second dim, so that lines of equal colour are told apart.
_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
#: Marker symbols, one per value of a second dim.
_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "cross")


def _merge_equal(names: Sequence[str], values: Sequence[np.ndarray]) -> list[tuple[str, int]]:
    """Series whose values are all equal become one, named ``"a = b"`` (drawn once, not hidden).

    Returns
    -------
    list of (name, index)
        One per distinct series, in first-seen order: its (joined) name and the index of its
        first series in ``values``.
    """
    out: list[tuple[str, int]] = []
    for k, (name, v) in enumerate(zip(names, values)):  # a handful of lines
        same = [
            i
            for i, (_, first) in enumerate(out)
            if values[first].shape == v.shape
            and np.allclose(values[first], v, rtol=1e-9, atol=1e-9, equal_nan=True)
        ]
        if same:
            out[same[0]] = (f"{out[same[0]][0]} = {name}", out[same[0]][1])
        else:
            out.append((name, k))
    return out


# -- SPAN ---------------------------------------------------------------------------------------


def risk_array_heatmap(span: xr.Dataset, *, title: str = "SPAN risk arrays") -> go.Figure:
    """Risk arrays as a heat map: contract (rows) x scenario (columns).

    Parameters
    ----------
    span
        Result of the ``span`` method; ``risk_array`` (contract, scenario) [currency per long
        contract, losses positive]. Other dims are taken at their base point.
    title
        Figure title.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    ra = _base_point(span["risk_array"], ("contract", "scenario")).transpose("contract", "scenario")
    currencies = (
        set(np.asarray(span["contract_currency"].values).astype(str))
        if "contract_currency" in span
        else set()
    )
    unit = currencies.pop() if len(currencies) == 1 else "contract currency"
    z = ra.values
    lim = float(np.nanmax(np.abs(z))) if z.size and np.isfinite(z).any() else 1.0
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[f"S{int(s)}" for s in ra["scenario"].values],
            y=[str(c) for c in ra["contract"].values],
            colorscale=_DIVERGING,
            zmid=0.0,
            zmin=-lim,
            zmax=lim,
            colorbar={"title": {"text": with_unit("loss", unit), "side": "right"}},
            hovertemplate="contract %{y}<br>scenario %{x}<br>loss %{z:,.2f} " + unit + "<extra></extra>",
        )
    )
    return _layout(
        fig, title, xaxis_title="SPAN scenario (1-16)", yaxis_title="contract", yaxis_autorange="reversed"
    )


def span_waterfall(span: xr.Dataset, account: str, *, title: str | None = None) -> go.Figure:
    """The SPAN requirement of one account as a waterfall.

    Scanning risk, plus intra-commodity spread and spot-month charges, less the inter-commodity
    credit, plus the short-option-minimum uplift, gives the SPAN risk; less the net option value
    gives the maintenance margin (floored at 0); the initial margin follows.

    Parameters
    ----------
    span
        Result of the ``span`` method (grid dims are taken at their base point).
    account
        The account to show.
    title
        Figure title.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    ds = span.sel(account=account)
    one = {v: _base_point(ds[v], ("group",)) for v in ds.data_vars if "account" in span[v].dims}
    scan = float(one["scan_risk"].sum())
    intra = float(one["intra_spread_charge"].sum())
    spot = float(one["spot_charge"].sum())
    inter = float(one["inter_spread_credit"].sum())
    span_risk = float(one["span_risk"])
    som = span_risk - (scan + intra + spot - inter)
    nov = float(one["net_option_value"])
    maint = float(one["maintenance"])
    floor = maint - (span_risk - nov)
    initial = float(one["initial"])
    steps = [
        ("scanning risk", "relative", scan),
        ("intra-commodity spreads", "relative", intra),
        ("spot month", "relative", spot),
        ("inter-commodity credit", "relative", -inter),
        ("short option minimum", "relative", som),
        ("SPAN risk", "total", span_risk),
        ("net option value", "relative", -nov),
    ]
    if abs(floor) > 1e-9:
        steps.append(("floor at 0", "relative", floor))
    steps += [("maintenance", "total", maint), ("initial uplift", "relative", initial - maint)]
    steps.append(("initial", "total", initial))
    names, measure, values = zip(*steps)
    fig = go.Figure(
        go.Waterfall(
            x=list(names),
            measure=list(measure),
            y=list(values),
            text=[f"{(v if abs(v) >= 0.5 else 0.0):,.0f}" for v in values],
            textposition="outside",
            connector={"line": {"color": "#999"}},
        )
    )
    cur = span.attrs.get("currency", "")
    return _layout(
        fig, title or f"SPAN margin breakdown, account {account}", yaxis_title=with_unit("amount", cur)
    )


def grid_heatmap(
    da: xr.DataArray,
    x: str,
    y: str,
    *,
    title: str,
    xlabel: str | None = None,
    ylabel: str | None = None,
    zlabel: str = "",
    fmt: str = ",.0f",
    colorscale: str = _SEQUENTIAL,
) -> go.Figure:
    """A 2-D DataArray (dims ``y`` x ``x``) as an annotated heat map.

    Parameters
    ----------
    da
        Values over exactly the dims ``x`` and ``y``.
    x, y
        Dim names for the columns and the rows.
    title, xlabel, ylabel, zlabel
        Labels; the axes default to the dims' display names (:mod:`marginsim.labels`), the colour
        bar to the values' ``units`` attr.
    fmt
        d3 number format of the cell text.
    colorscale
        Plotly colour scale name.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    arr = da.transpose(y, x)
    zlabel = zlabel or _unit(da)
    xlabel, ylabel = xlabel or display_name(x), ylabel or display_name(y)
    fig = go.Figure(
        go.Heatmap(
            z=arr.values,
            x=display_names(_tick_text(arr[x].values)),
            y=display_names(_tick_text(arr[y].values)),
            colorscale=colorscale,
            colorbar={"title": {"text": zlabel, "side": "right"}},
            texttemplate=f"%{{z:{fmt}}}",
            hovertemplate=f"{xlabel} %{{x}}<br>{ylabel} %{{y}}<br>{zlabel} %{{z:{fmt}}}<extra></extra>",
        )
    )
    return _layout(fig, title, xaxis_title=xlabel, yaxis_title=ylabel)


def _tick_text(values: np.ndarray) -> list[str]:
    """Coordinate values as tick text: numbers without trailing zeros (``0.25``, not ``0.250000``)."""
    if np.issubdtype(np.asarray(values).dtype, np.number):
        return [f"{v:g}" for v in np.asarray(values, dtype=float)]
    return [str(v) for v in values]


def lines_over(
    data: xr.Dataset | xr.DataArray,
    dim: str,
    *,
    by: str | None = None,
    title: str,
    ylabel: str = "",
    xlabel: str | None = None,
    percent_x: bool = False,
) -> go.Figure:
    """Lines of one or more variables along ``dim``, one line per variable and value of ``by``.

    Each variable has its colour and each value of ``by`` its dash style and marker, so lines
    that lie close together are told apart; lines with exactly the same values are drawn once,
    named ``"a = b"``. Variable names are shown by their display names (:mod:`marginsim.labels`).

    Parameters
    ----------
    data
        A DataArray, or a Dataset whose variables all share ``dim`` (and ``by``).
    dim
        The x axis dim.
    by
        A second dim: one line per coordinate value (e.g. ``account``).
    title, ylabel, xlabel
        Labels (``xlabel`` defaults to the dim's display name).
    percent_x
        Format the x axis as a percentage.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    ds = data.to_dataset(name=data.name or "value") if isinstance(data, xr.DataArray) else data
    variables = list(ds.data_vars)
    keys = [str(k) for k in ds[by].values] if by else [""]
    x = ds[dim].values
    palette = px.colors.qualitative.Plotly
    names, values, styles = [], [], []
    for j, key in enumerate(keys):  # a handful of lines (variables x accounts), each a whole array
        for i, v in enumerate(variables):
            da = ds[v].sel({by: ds[by].values[j]}) if by else ds[v]
            values.append(np.asarray(da.transpose(dim).values, dtype=float))
            label = display_name(v)
            names.append(f"{key}: {label}" if by else label)
            styles.append((palette[i % len(palette)], _DASHES[j % len(_DASHES)], _SYMBOLS[j % len(_SYMBOLS)]))
    fig = go.Figure(
        [
            go.Scatter(
                x=x,
                y=values[k],
                mode="lines+markers",
                name=name,
                line={"color": styles[k][0], "dash": styles[k][1]},
                marker={"symbol": styles[k][2], "size": 8},
            )
            for name, k in _merge_equal(names, values)
        ]
    )
    fig = _layout(
        fig, title, xaxis_title=xlabel or display_name(dim), yaxis_title=ylabel, legend_title_text=""
    )
    if percent_x:
        fig.update_xaxes(tickformat=".0%")
    return fig


def grouped_bars(frame: pd.DataFrame, *, title: str, ylabel: str = "", xlabel: str = "") -> go.Figure:
    """Grouped bars: one group per row of ``frame``, one bar colour per column.

    Parameters
    ----------
    frame
        Rows: the x categories; columns: the series.
    title, ylabel, xlabel
        Labels.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    long = frame.rename_axis(index="category", columns="series").stack().rename("value").reset_index()
    long[["category", "series"]] = long[["category", "series"]].astype(str)
    # value labels read horizontally (plotly turns them in narrow bars); short (6.64M) when many bars
    text = ",.0f" if frame.size <= 8 else ".3~s"
    fig = px.bar(long, x="category", y="value", color="series", barmode="group", text_auto=text)
    fig.update_traces(textangle=0)
    return _layout(fig, title, yaxis_title=ylabel, xaxis_title=xlabel, legend_title_text="")


# -- portfolio margin ---------------------------------------------------------------------------


def components_bars(pm: xr.Dataset, components: Sequence[str], *, title: str) -> go.Figure:
    """Portfolio-margin components side by side, one bar colour per account.

    Parameters
    ----------
    pm
        Result of the ``portfolio_margin`` method (grid dims at their base point).
    components
        Component variables (dim ``account``), e.g. :data:`marginsim.methods.portfolio_margin.COMPONENTS`.
    title
        Figure title.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    arr = xr.concat([_base_point(pm[c], ("account",)) for c in components], dim="component")
    frame = pd.DataFrame(
        arr.values, index=display_names(components), columns=[str(a) for a in pm["account"].values]
    )
    unit = _unit(pm[components[0]], pm) if len(components) else ""
    return grouped_bars(frame, title=title, ylabel=with_unit("amount", unit), xlabel="component")


def group_bars(
    da: xr.DataArray, *, title: str, highlight: xr.DataArray | None = None, ylabel: str = ""
) -> go.Figure:
    """Bars per class group (sorted, largest first), highlighted groups in red.

    Parameters
    ----------
    da
        Values over dim ``group``.
    title, ylabel
        Labels.
    highlight
        Boolean over ``group``: groups to colour as drivers.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    order = np.argsort(-np.nan_to_num(da.values, nan=-np.inf), kind="stable")
    groups = da["group"].values[order]
    hl = np.zeros(order.size, bool) if highlight is None else highlight.values[order].astype(bool)
    fig = go.Figure(
        go.Bar(
            x=[str(g) for g in groups],
            y=da.values[order],
            marker_color=np.where(hl, "#d62728", "#1f77b4").tolist(),
            texttemplate="%{y:,.0f}",
        )
    )
    return _layout(fig, title, yaxis_title=ylabel, xaxis_title="class group")


def loss_grid_heatmap(scan_loss: xr.DataArray, price_move: xr.DataArray, *, title: str) -> go.Figure:
    """The class-group loss grid: class group (rows) x price point (columns), worst vol point.

    Parameters
    ----------
    scan_loss
        Losses over (group, price_point, vol_point) [currency, losses positive].
    price_move
        Price move of each point per group (group, price_point) [fraction], shown on hover.
    title
        Figure title.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    unit = _unit(scan_loss)
    worst = scan_loss.max("vol_point").transpose("group", "price_point")
    moves = price_move.transpose("group", "price_point").values
    lim = float(np.nanmax(np.abs(worst.values))) if worst.size else 1.0
    fig = go.Figure(
        go.Heatmap(
            z=worst.values,
            x=[f"{p:+.1f}" for p in worst["price_point"].values],
            y=[str(g) for g in worst["group"].values],
            customdata=moves * 100.0,
            colorscale=_DIVERGING,
            zmid=0.0,
            zmin=-lim,
            zmax=lim,
            colorbar={"title": {"text": with_unit("loss", unit), "side": "right"}},
            hovertemplate="%{y}, price point %{x} (move %{customdata:+.1f} %)<br>"
            "loss %{z:,.0f} " + unit + "<extra></extra>",
        )
    )
    return _layout(
        fig,
        title,
        xaxis_title="price point (multiple of the scan range; worst vol point)",
        yaxis_title="class group",
        yaxis_autorange="reversed",
    )


def single_name_heatmap(loss: xr.DataArray, *, title: str) -> go.Figure:
    """Single-name stress losses: class group x single-name method.

    Methods that apply to none of the class groups are left out (no empty column); the axis
    title names them.

    Parameters
    ----------
    loss
        Losses over (group, single_name_method) [currency], NaN where a method does not apply.
    title
        Figure title.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    applies = loss.notnull().any("group").values
    unused = display_names(loss["single_name_method"].values[~applies])
    xlabel = "single-name method" + (f" (not applicable to any: {', '.join(unused)})" if unused else "")
    return grid_heatmap(
        loss.isel(single_name_method=np.flatnonzero(applies)),
        "single_name_method",
        "group",
        title=title,
        xlabel=xlabel,
        zlabel=with_unit("loss", _unit(loss)),
    )


# -- CFD ----------------------------------------------------------------------------------------


def path_figure(
    ds: xr.Dataset,
    variables: Sequence[str],
    *,
    marker: str | None = None,
    marker_name: str = "close-out",
    title: str,
    ylabel: str = "",
) -> go.Figure:
    """Variables along ``step`` (one line each), with markers where ``marker`` is true.

    Parameters
    ----------
    ds
        Dataset whose variables have the single dim ``step``.
    variables
        Variables to draw.
    marker
        A boolean variable over ``step``: points to mark (drawn on the first variable).
    marker_name
        Legend name of the markers.
    title, ylabel
        Labels.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    steps = ds["step"].values
    values = [np.asarray(ds[v].values, dtype=float) for v in variables]
    fig = go.Figure(
        [
            go.Scatter(x=steps, y=values[k], mode="lines+markers", name=name)
            for name, k in _merge_equal(display_names(variables), values)
        ]
    )
    if marker is not None:
        hit = ds[marker].values.astype(bool)
        fig.add_trace(
            go.Scatter(
                x=steps[hit],
                y=ds[variables[0]].values[hit],
                mode="markers",
                marker={"symbol": "x", "size": 14, "color": "#d62728"},
                name=marker_name,
            )
        )
    fig = _layout(fig, title, xaxis_title="step", yaxis_title=ylabel)
    return _integer_axis(fig, "x")


def leverage_heatmap(
    da: xr.DataArray, *, title: str, zlabel: str, fmt: str = ".1%", colorscale: str = _SEQUENTIAL
) -> go.Figure:
    """A result over (cfd_class, leverage_used) as a heat map.

    Parameters
    ----------
    da
        Values over dims ``cfd_class`` and ``leverage_used`` [fraction of the cap].
    title, zlabel
        Labels.
    fmt
        d3 format of the cell text.
    colorscale
        Plotly colour scale.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    fig = grid_heatmap(
        da,
        "leverage_used",
        "cfd_class",
        title=title,
        xlabel="leverage used (fraction of the retail cap)",
        ylabel="leverage class",
        zlabel=zlabel,
        fmt=fmt,
        colorscale=colorscale,
    )
    if fmt.endswith("%"):  # the colour bar in percent too, like the cells
        fig.update_traces(colorbar_tickformat=".0%")
    return fig.update_yaxes(autorange="reversed")  # rows top-down in the order given


# -- account layer ------------------------------------------------------------------------------


def state_path_figure(
    path: xr.Dataset, state_names: Sequence[str], *, title: str, time_labels: Sequence[str] | None = None
) -> go.Figure:
    """Risk ratios along ``step`` over the state bands, the state per step, and the deadlines.

    Top: the general risk ratio (initial / equity) and the maintenance risk ratio (maintenance /
    equity) [percent] over bands: below 100 % general is normal; at or above it a margin call;
    a maintenance ratio at or above 100 % is forced liquidation. Bottom: the state of each step.
    Steps with an outstanding margin call carry their deadline.

    Parameters
    ----------
    path
        Over dim ``step``: ``risk_ratio``, ``maintenance_risk_ratio`` [1 = 100 %], ``state``
        (codes into ``state_names``), ``deadline`` (datetime64, NaT when none).
    state_names
        Name of each state code (normal, margin call, forced liquidation).
    title
        Figure title.
    time_labels
        Labels of the steps (e.g. local times); default: the step numbers.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    from plotly.subplots import make_subplots

    x = list(time_labels) if time_labels is not None else [str(s) for s in path["step"].values]
    general = np.minimum(path["risk_ratio"].values * 100.0, 1e4)
    maint = np.minimum(path["maintenance_risk_ratio"].values * 100.0, 1e4)
    state = path["state"].values.astype(int)
    deadline = pd.to_datetime(path["deadline"].values)
    due = ~pd.isna(deadline)
    labels = np.array(display_names(state_names), dtype=object)
    top = float(max(np.nanmax(general), np.nanmax(maint), 120.0)) * 1.1
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.8, 0.2], vertical_spacing=0.06)
    fig.add_trace(go.Scatter(x=x, y=general, mode="lines+markers", name="general risk ratio"), row=1, col=1)
    fig.add_trace(
        go.Scatter(
            x=x, y=maint, mode="lines+markers", name="maintenance risk ratio (forced liquidation at 100 %)"
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=np.asarray(x, dtype=object)[due].tolist(),
            y=general[due],
            mode="markers+text",
            text=["due " + d.strftime("%a %d %b %H:%M") for d in deadline[due]],
            textposition="top center",
            marker={"symbol": "diamond", "size": 11, "color": "#000"},
            name="margin-call deadline",
        ),
        row=1,
        col=1,
    )
    n = max(len(state_names) - 1, 1)
    fig.add_trace(
        go.Heatmap(
            z=[state.tolist()],
            x=x,
            y=["state"],
            zmin=0,
            zmax=n,
            colorscale=[[0.0, "#2ca02c"], [0.5, "#ff7f0e"], [1.0, "#d62728"]],
            showscale=False,
            text=[labels[np.clip(state, 0, len(labels) - 1)].tolist()],
            texttemplate="%{text}",
            hovertemplate="step %{x}: %{text}<extra></extra>",
        ),
        row=2,
        col=1,
    )
    # bands after the traces: plotly skips shapes on subplots that are still empty
    fig.add_hrect(y0=0, y1=100, fillcolor="#2ca02c", opacity=0.2, line_width=0, layer="below", row=1, col=1)
    fig.add_hrect(y0=100, y1=top, fillcolor="#ff7f0e", opacity=0.2, line_width=0, layer="below", row=1, col=1)
    fig.add_hline(y=100, line_dash="dash", line_color="#d62728", row=1, col=1)
    fig.update_yaxes(title_text="risk ratio [%]", range=[0, top], row=1, col=1)
    fig.update_xaxes(title_text="step" if time_labels is None else "time", type="category", row=2, col=1)
    fig.add_annotation(x=x[0], y=50, text="normal", showarrow=False, xanchor="left", row=1, col=1)
    fig.add_annotation(
        x=x[0], y=min(top * 0.95, 115), text="margin call", showarrow=False, xanchor="left", row=1, col=1
    )
    return _layout(fig, title, legend={"orientation": "h", "y": -0.22})


def balances_bars(before: pd.Series, after: pd.Series, *, title: str, ylabel: str = "") -> go.Figure:
    """Balances before and after (e.g. a forced currency conversion), side by side.

    Parameters
    ----------
    before, after
        Balances indexed by currency group or currency.
    title, ylabel
        Labels.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    frame = pd.DataFrame({"before": before, "after": after}).fillna(0.0)
    return grouped_bars(frame, title=title, ylabel=ylabel)


# -- backtests -----------------------------------------------------------------------------------


def margin_history_figure(
    series: xr.Dataset,
    account: str,
    periods: dict[str, tuple[str, str]] | None = None,
    *,
    title: str,
    ylabel: str = "",
) -> go.Figure:
    """Each model's margin over the dates of a backtest, the realised loss, and the exceedances.

    Parameters
    ----------
    series
        ``margin`` and ``exceedance`` over (model, account, date), ``loss`` over (account, date)
        (:func:`marginsim.studies.backtests.backtest_models`); the model names are shown as they are.
    account
        The account drawn.
    periods
        Label -> (first day, last day) of the periods shaded (e.g. crises).
    title, ylabel
        Labels.

    Returns
    -------
    plotly.graph_objects.Figure
        One line per model, the loss line (grey), and on it one marker per exceedance in the
        colour of the model exceeded.
    """
    s = series.sel(account=account)
    dates = pd.DatetimeIndex(s["date"].values)
    colours = px.colors.qualitative.Plotly
    fig = go.Figure()
    loss = s["loss"].values
    fig.add_trace(
        go.Scatter(x=dates, y=loss, mode="lines", name="realised loss", line={"color": "#9e9e9e", "width": 1})
    )
    for k, model in enumerate(s["model"].values):
        colour = colours[k % len(colours)]
        m = s["margin"].sel(model=model).values
        fig.add_trace(
            go.Scatter(x=dates, y=m, mode="lines", name=str(model), line={"color": colour, "width": 1.5})
        )
        hit = s["exceedance"].sel(model=model).values.astype(bool)
        fig.add_trace(
            go.Scatter(
                x=dates[hit],
                y=loss[hit],
                mode="markers",
                marker={"symbol": "x", "size": 8, "color": colour},
                name=f"{model}: exceeded",
            )
        )
    for label, (lo, hi) in (periods or {}).items():
        if pd.Timestamp(hi) >= dates[0] and pd.Timestamp(lo) <= dates[-1]:
            fig.add_vrect(
                x0=lo,
                x1=hi,
                fillcolor="#bdbdbd",
                opacity=0.25,
                line_width=0,
                annotation_text=label,
                annotation_position="top left",
            )
    return _layout(
        fig, title, xaxis_title="date", yaxis_title=ylabel, legend={"orientation": "h", "y": -0.22}
    )


# -- attribution and what-if --------------------------------------------------------------------


def position_labels(
    contract: Sequence[str] | np.ndarray,
    quantity: Sequence[float] | np.ndarray,
    position: Sequence[int] | np.ndarray,
) -> list[str]:
    """Position labels as a reader knows them: ``"IDX-DEC26 +4"``; positions of the same contract
    and quantity get their position numbers (``"IDX-DEC26 +4 (position 7)"``), so that every label
    is distinct.

    Parameters
    ----------
    contract, quantity, position
        Per position: contract id, signed quantity [contracts], position number in the book.

    Returns
    -------
    list of str
    """
    text = (
        pd.Series(np.asarray(contract, dtype=object).astype(str))
        + " "
        + pd.Series(np.asarray(quantity, dtype=float)).map("{:+,.15g}".format)
    )
    twice = text.duplicated(keep=False).to_numpy()
    number = pd.Series(np.asarray(position)).astype(str)
    return text.where(~twice, text + " (position " + number + ")").tolist()


def _account_attribution(ds: xr.Dataset, account: str, variables: Sequence[str]) -> xr.Dataset:
    """The attribution variables of one account's positions, at the base grid point."""
    at = _base_point_ds(ds[list(variables)], ("position",))
    mask = np.asarray(at["attribution_account"].values).astype(str) == str(account)
    return at.isel(position=np.flatnonzero(mask))


def _base_point_ds(ds: xr.Dataset, keep: Sequence[str]) -> xr.Dataset:
    out: xr.Dataset = base_point(ds, keep)
    return out


def attribution_waterfall(
    ds: xr.Dataset, account: str, *, top: int | None = 15, title: str | None = None
) -> go.Figure:
    """An account's maintenance margin built up from its positions' contributions, largest first.

    A waterfall: one bar per position (its ``contribution``, sorted from the largest to the
    smallest: hedges last, below zero), ending in the account's requirement (``maintenance``),
    which the contributions sum to. Grid dims are taken at their base point.

    Parameters
    ----------
    ds
        One method's result with attribution (``margin(..., attribution=True)``): ``contribution``
        over ``position`` with its ``attribution_*`` coords, and ``maintenance`` over ``account``.
    account
        The account.
    top
        Show the ``top`` positions of largest absolute contribution, the others as one bar
        (``"other n positions"``); ``None`` or 0: every position.
    title
        Figure title.

    Returns
    -------
    plotly.graph_objects.Figure

    Raises
    ------
    ValueError
        The method has no allocation rule (no ``contribution``).
    """
    if "contribution" not in ds:
        raise ValueError("the result has no contribution (a method without an allocation rule)")
    at = _account_attribution(ds, account, ("contribution",))
    value = np.asarray(at["contribution"].values, dtype=float)
    labels = pd.Series(
        position_labels(
            at["attribution_contract"].values, at["attribution_quantity"].values, at["position"].values
        )
    ).to_numpy()
    order = np.argsort(-value, kind="stable")
    if top and value.size > top:
        kept = np.sort(np.argsort(-np.abs(value), kind="stable")[:top])  # indices into the positions
        kept = kept[np.argsort(-value[kept], kind="stable")]
        rest = np.setdiff1d(np.arange(value.size), kept)
        names = [*labels[kept].tolist(), f"other {rest.size} positions"]
        values = [*value[kept].tolist(), float(value[rest].sum())]
    else:
        names, values = labels[order].tolist(), value[order].tolist()
    maint = float(_base_point(ds["maintenance"].sel(account=account), ()).values)
    cur = _unit(ds["contribution"], ds)
    fig = go.Figure(
        go.Waterfall(
            x=[*names, "maintenance"],
            measure=["relative"] * len(values) + ["total"],
            y=[*values, maint],
            text=[f"{(v if abs(v) >= 0.5 else 0.0):,.0f}" for v in [*values, maint]],
            textposition="outside",
            connector={"line": {"color": "#999"}},
            decreasing={"marker": {"color": "#2ca02c"}},
            increasing={"marker": {"color": "#d62728"}},
            totals={"marker": {"color": "#1f77b4"}},
        )
    )
    return _layout(
        fig,
        title or f"Maintenance margin of {account} by position",
        yaxis_title=with_unit("contribution", cur),
        xaxis_title="position (contract and quantity)",
    )


def marginal_vs_contribution(
    results: Mapping[str, xr.Dataset], account: str, *, title: str | None = None
) -> go.Figure:
    """Each position's marginal margin (leave-one-out) against its contribution, per method.

    On the dashed diagonal the two agree; above it, closing the position would save more than its
    allocated share (it adds risk the others do not offset); below it, less (its risk is offset,
    or it offsets others'). Grid dims are taken at their base point.

    Parameters
    ----------
    results
        Method name -> its result with attribution; methods without ``contribution`` are left out.
    account
        The account.
    title
        Figure title.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    shown = {m: ds for m, ds in results.items() if "contribution" in ds and "marginal" in ds}
    fig = go.Figure()
    lo, hi, cur = 0.0, 0.0, ""
    palette = px.colors.qualitative.Plotly
    for i, (name, ds) in enumerate(shown.items()):  # a handful of methods, each a whole array
        at = _account_attribution(ds, account, ("contribution", "marginal"))
        x = np.asarray(at["contribution"].values, dtype=float)
        y = np.asarray(at["marginal"].values, dtype=float)
        labels = position_labels(
            at["attribution_contract"].values, at["attribution_quantity"].values, at["position"].values
        )
        cur = cur or _unit(ds["contribution"], ds)
        if x.size:
            lo, hi = min(lo, float(x.min()), float(y.min())), max(hi, float(x.max()), float(y.max()))
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="markers+text",
                name=method_name(name),
                text=labels,
                textposition="top center",
                marker={
                    "size": 11,
                    "color": palette[i % len(palette)],
                    "symbol": _SYMBOLS[i % len(_SYMBOLS)],
                },
                hovertemplate="%{text}<br>contribution %{x:,.2f}<br>marginal %{y:,.2f}<extra>"
                + method_name(name)
                + "</extra>",
            )
        )
    pad = 0.05 * (hi - lo) if hi > lo else 1.0
    fig.add_trace(
        go.Scatter(
            x=[lo - pad, hi + pad],
            y=[lo - pad, hi + pad],
            mode="lines",
            name="marginal = contribution",
            line={"dash": "dash", "color": "#999"},
            hoverinfo="skip",
        )
    )
    return _layout(
        fig,
        title or f"Marginal against contribution, account {account}",
        xaxis_title=with_unit("contribution (allocated share)", cur),
        yaxis_title=with_unit("marginal (saved by closing the position)", cur),
        legend_title_text="",
    )


def what_if_bars(
    results: Mapping[str, xr.Dataset], variable: str = "maintenance", *, title: str | None = None
) -> go.Figure:
    """Before and after each trade, one panel per method, the change written on the bars.

    Each trade is labelled with its id and account (``"sell 2 Dec futures (main)"``).

    Parameters
    ----------
    results
        Method name -> what-if Dataset (:func:`marginsim.what_if`: ``<variable>_before``,
        ``<variable>_after``, ``<variable>_change`` over ``trade``); methods without the variable
        are left out. Grid dims are taken at their base point.
    variable
        The compared variable (``maintenance``, ``initial``...).
    title
        Figure title.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    from plotly.subplots import make_subplots

    shown = {m: ds for m, ds in results.items() if f"{variable}_after" in ds}
    n = max(len(shown), 1)
    fig = make_subplots(
        rows=n,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08 if n > 1 else 0.0,
        subplot_titles=[method_name(m) for m in shown] or None,
    )
    label = display_name(variable)
    cur = ""
    for i, ds in enumerate(shown.values()):  # a handful of methods, each over every trade
        at = _base_point_ds(ds[[f"{variable}_{w}" for w in ("before", "after", "change")]], ("trade",))
        trades = (
            [f"{t} ({a})" for t, a in zip(at["trade"].values.tolist(), at["account"].values.tolist())]
            if "account" in at.coords
            else [str(t) for t in at["trade"].values]
        )
        before = np.asarray(at[f"{variable}_before"].values, dtype=float)
        after = np.asarray(at[f"{variable}_after"].values, dtype=float)
        change = np.asarray(at[f"{variable}_change"].values, dtype=float)
        cur = cur or _unit(ds[f"{variable}_after"], ds)
        fig.add_trace(
            go.Bar(
                x=trades,
                y=before,
                name="before",
                marker_color="#aaaaaa",
                showlegend=i == 0,
                legendgroup="before",
                hovertemplate="%{x}<br>before %{y:,.2f}<extra></extra>",
            ),
            row=i + 1,
            col=1,
        )
        fig.add_trace(
            go.Bar(
                x=trades,
                y=after,
                name="after (green: lower, red: higher; on the bar: the change)",
                marker_color=np.where(
                    change > 0, "#d62728", np.where(change < 0, "#2ca02c", "#1f77b4")
                ).tolist(),
                showlegend=i == 0,
                legendgroup="after",
                text=[f"{c:+,.0f}" if abs(c) >= 0.5 else "0" for c in change.tolist()],
                textposition="outside",
                hovertemplate="%{x}<br>after %{y:,.2f}<br>change %{text}<extra></extra>",
            ),
            row=i + 1,
            col=1,
        )
        fig.update_yaxes(title_text=with_unit(label, cur), row=i + 1, col=1)
    fig.update_xaxes(title_text="trade (account)", row=n, col=1)
    fig.update_layout(barmode="group", height=max(320, 260 * n + 120))
    return _layout(fig, title or f"{label.capitalize()} before and after each trade", legend_title_text="")


def hedge_heatmap(change: xr.DataArray, *, title: str, zlabel: str = "") -> go.Figure:
    """The maintenance change of every one-contract trade: contract (rows) x quantity (columns).

    Blue cells lower the requirement (a hedge), red cells raise it; white: no change.

    Parameters
    ----------
    change
        Over dims ``contract`` and ``quantity`` [currency] (e.g.
        :func:`marginsim.studies.hedge_grid`).
    title, zlabel
        Labels; the colour bar defaults to ``change [unit]``.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    lim = float(np.nanmax(np.abs(change.values))) if change.size and np.isfinite(change.values).any() else 1.0
    fig = grid_heatmap(
        change,
        "quantity",
        "contract",
        title=title,
        xlabel="quantity traded [contracts]",
        ylabel="contract",
        zlabel=zlabel or with_unit("maintenance change", _unit(change)),
        fmt=".3~s",
        colorscale=_DIVERGING,
    )
    fig.update_traces(zmid=0.0, zmin=-lim, zmax=lim)
    return fig.update_yaxes(autorange="reversed")
