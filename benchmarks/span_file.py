"""Parse + margin 10,000 random portfolios on a real SPAN file, against the peer package `marginism`.

marginsim margins every portfolio in one vectorised call (the `account` dim); `marginism`
(PyPI, a dev dependency) parses the same format and computes one portfolio at a time. Both get
the same random portfolios of 1-20 positions (futures and options of the file). The script prints
both times, the ratio, and how many portfolios agree on scanning risk to the cent, then the
agreement of every other component with the reason for each difference.

Needs the peer:  .venv/bin/pip install -e '.[bench]'
Run:  .venv/bin/python benchmarks/span_file.py [--file ../shared/data/span/takas.spn] [--portfolios 10000]
      [--repeat 7] [--peer-repeat 3]

"margin" is building the book from the (account, contract id, quantity) rows and margining it
(``Inputs.with_book`` + ``span_margin(..., scan_loss=False)``: every requirement and component,
without the per-scenario losses of each (account, combined commodity), which are timed on a
separate line); "parse" is reading the file into the data model. The first margin after a parse
also plans every contract of the file (risk arrays, spreads, rates as kernel tables), once per
file: it is timed apart ("plan"), and the total counts it. "margin, fresh books" margins a
different random book each run (nothing is kept from one book to the next).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import marginsim
from marginsim.io.span import clear_span_file_cache, file_contract_table, read_span_xml

DEFAULT_FILE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "span" / "takas.spn"


def random_portfolios(path: Path, n: int, seed: int = 11, sf=None):
    """``n`` portfolios of 1-20 positions: (account, contract id, quantity) rows, plus peer positions."""
    sf = read_span_xml(path) if sf is None else sf
    t = file_contract_table(sf)
    # marginism resolves a position by (symbol = pfCode = combined commodity, expiry, type, strike):
    # keep the contracts whose portfolio code is their combined commodity's code, as on NSE
    pf_code = np.array([str(n).split(":")[0] for n in t["names"]])
    ok = (pf_code == t["group"].astype(str)) & np.isin(t["type"], ["future", "call", "put"])
    ids = t["names"][ok]
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 21, n)
    account = np.repeat(np.arange(n), sizes)
    pick = rng.integers(0, ids.size, sizes.sum())
    qty = rng.integers(1, 11, sizes.sum()) * np.where(rng.random(sizes.sum()) < 0.5, -1, 1)
    return sf, ids[pick], qty.astype(float), account


def peer_positions(contract_ids, qty, account, n):
    from marginism import Position

    out = [[] for _ in range(n)]
    for cid, q, a in zip(contract_ids, qty, account):
        parts = str(cid).split(":")
        if parts[1] == "F":
            out[a].append(Position(parts[0], "FUT", float(q), expiry=parts[2]))
        else:
            out[a].append(
                Position(
                    parts[0],
                    "CE" if parts[1] == "C" else "PE",
                    float(q),
                    expiry=parts[2],
                    strike=float(parts[3]),
                )
            )
    return out


def _timed(fn, repeat: int):
    """Run ``fn`` ``repeat`` times: (list of wall times [s], last result)."""
    times, out = [], None
    for _ in range(max(repeat, 1)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def _median(times) -> float:
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", type=Path, default=DEFAULT_FILE)
    ap.add_argument("--portfolios", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=7, help="timed runs of each marginsim step")
    ap.add_argument("--peer-repeat", type=int, default=3, help="timed runs of the peer's margin loop")
    args = ap.parse_args()
    if not args.file.exists():
        raise SystemExit(f"no SPAN file at {args.file}")
    n = args.portfolios
    sf, ids, qty, account = random_portfolios(args.file, n)
    print(f"{n:,} random portfolios of 1-20 positions ({ids.size:,} positions) on {args.file.name}")

    # -- marginsim: parse once, then all portfolios in one vectorised call -------------------------------
    from marginsim.methods import span as span_plans
    from marginsim.methods.span import span_margin

    base = {"name": "bench", "as_of": "2016-05-17", "currency": "TRY", "span": {"source": str(args.file)}}
    # the first call in a process pays one-time costs (numba kernels loaded from their on-disk
    # cache, first touch of large arrays); it is reported apart, then each step is timed
    # ``--repeat`` times, best and median printed (the same for the peer)
    t0 = time.perf_counter()
    span_margin(marginsim.load(base).with_book(ids, qty, account), scan_loss=False)
    t_first = time.perf_counter() - t0

    def parse():
        clear_span_file_cache()  # time the parse, not the in-process cache
        return marginsim.load(base)  # parse the file, build contracts and parameters

    parse_times, plan_times = [], []
    for _ in range(max(args.repeat, 1)):
        t0 = time.perf_counter()
        inputs = parse()
        t1 = time.perf_counter()
        # what the first span_margin after a parse does once for the file (kept in inputs.derived)
        span_plans._file_plan(inputs, inputs.span_params, "auto")
        parse_times.append(t1 - t0)
        plan_times.append(time.perf_counter() - t1)
    margin_times, ds = _timed(
        lambda: span_margin(inputs.with_book(ids, qty, account), scan_loss=False), args.repeat
    )
    fresh = [random_portfolios(args.file, n, seed=100 + r, sf=sf)[1:] for r in range(max(args.repeat, 1))]
    fresh_times = []
    for f_ids, f_qty, f_account in fresh:
        t0 = time.perf_counter()
        span_margin(inputs.with_book(f_ids, f_qty, f_account), scan_loss=False)
        fresh_times.append(time.perf_counter() - t0)
    full_times, _ = _timed(lambda: span_margin(inputs.with_book(ids, qty, account)), args.repeat)
    order = np.argsort(ds["account"].values.astype(int))
    ours_scan = ds["scan_risk"].sum("group").values[order]
    ours_intra = ds["intra_spread_charge"].sum("group").values[order]
    ours_inter = ds["inter_spread_credit"].sum("group").values[order]
    ours_som = ds["short_option_minimum"].sum("group").values[order]
    ours_nov = ds["net_option_value"].values[order]

    # -- marginism: parse, then one portfolio at a time ------------------------------------------------
    from marginism import SpanCalculator

    positions = peer_positions(ids, qty, account, n)
    p_parse_times, calc = _timed(lambda: SpanCalculator.from_file(str(args.file)), args.repeat)
    p_margin_times, results = _timed(lambda: [calc.calculate(p) for p in positions], args.peer_repeat)

    t_parse, t_margin, t_full = min(parse_times), min(margin_times), min(full_times)
    t_plan = min(plan_times)
    p_parse, p_margin = min(p_parse_times), min(p_margin_times)
    t_ours, t_peer = t_parse + t_plan + t_margin, p_parse + p_margin
    print(
        f"{'best of runs':28}{'parse':>9}{'plan':>9}{'margin':>9}{'total':>9}   seconds"
        "  (median parse / margin)"
    )
    print(
        f"{'marginsim':28}{t_parse:9.3f}{t_plan:9.3f}{t_margin:9.3f}{t_ours:9.3f}   "
        f"({_median(parse_times):.3f} / {_median(margin_times):.3f})  all portfolios in one call"
    )
    print(
        f"{'marginsim, fresh books':28}{'':9}{'':9}{min(fresh_times):9.3f}{'':9}   "
        f"(   -  / {_median(fresh_times):.3f})  a different book each run"
    )
    print(
        f"{'marginsim, with scan_loss':28}{'':9}{'':9}{t_full:9.3f}{'':9}   "
        f"(   -  / {_median(full_times):.3f})  + losses per (account, CC, scenario)"
    )
    print(
        f"{'marginism':28}{p_parse:9.3f}{'':9}{p_margin:9.3f}{t_peer:9.3f}   "
        f"({_median(p_parse_times):.3f} / {_median(p_margin_times):.3f})  one portfolio at a time"
    )
    print(
        f"speed-up: margin {p_margin / t_margin:.1f}x (fresh books {p_margin / min(fresh_times):.1f}x, "
        f"with scan_loss {p_margin / t_full:.1f}x), parse + plan + margin {t_peer / t_ours:.1f}x; "
        f"parse alone {p_parse / t_parse:.2f}x\n"
        f"marginsim's first call in a fresh process (parse, kernels from the on-disk cache, plan, margin): "
        f"{t_first:.2f} s"
    )

    peer_scan = np.array([sum(c.scan_risk for c in r.by_commodity.values()) for r in results])
    peer_cal = np.array([sum(c.calendar_spread_charge for c in r.by_commodity.values()) for r in results])
    peer_som = np.array([sum(c.short_option_minimum for c in r.by_commodity.values()) for r in results])
    peer_nov = np.array([r.net_option_value for r in results])
    unmatched = sum(len(r.unmatched) for r in results)

    def agree(a, b):
        return int(np.sum(np.abs(np.round(a, 2) - np.round(b, 2)) < 0.005))

    print(
        f"scanning risk agrees to the cent: {agree(ours_scan, peer_scan):,} / {n:,} portfolios "
        f"(peer could not match {unmatched} positions)"
    )
    print(f"net option value agrees         : {agree(ours_nov, peer_nov):,} / {n:,}")
    print(
        f"intra (calendar) charge agrees  : {agree(ours_intra, peer_cal):,} / {n:,}   "
        f"(ours > 0 in {int((ours_intra > 0).sum()):,}; peer > 0 in {int((peer_cal > 0).sum()):,})"
    )
    print(f"short option minimum agrees     : {agree(ours_som, peer_som):,} / {n:,}")
    print(
        f"inter-commodity credit          : ours > 0 in {int((ours_inter > 0).sum()):,} portfolios; "
        "the peer computes none"
    )


if __name__ == "__main__":
    main()
