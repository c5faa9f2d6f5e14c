"""Peak memory of reading a large SPAN XML file: a synthetic file of ~500 MB and 1,000,000 options.

The file (written once to ``--dir``, reused while its size matches) has one exchange, a physical,
a futures portfolio and an option portfolio of ``--options`` options in series of 1,000, each with
16 risk-array values and a composite delta, plus a ``ccDef`` with a ``pointDef``, an intra spread
and ``interSpreads`` / ``superSpreads``. The read runs in its own process; the script prints the
file size, the wall and CPU seconds of ``read_span_xml`` and that process's peak resident memory
(``resource.getrusage`` max RSS, which includes the interpreter and numpy: ~60 MB before reading).

Run:  .venv/bin/python benchmarks/span_big_file.py [--options 1000000] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

_POINTS = "".join(
    f"<scanPointDef><point>{i + 1}</point><priceScanDef><mult>1</mult><numerator>{n}</numerator>"
    f"<denominator>3</denominator></priceScanDef><volScanDef><mult>1</mult><numerator>{v}</numerator>"
    f"<denominator>1</denominator></volScanDef><weight>1</weight><pairedPoint>{i + 2 if i % 2 == 0 else i}"
    "</pairedPoint></scanPointDef>"
    for i, (n, v) in enumerate(
        [(0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1), (2, 1), (2, -1), (-2, 1), (-2, -1), (3, 1), (3, -1),
         (-3, 1), (-3, -1), (9, 0), (-9, 0)]
    )
)  # fmt: skip
_DELTA = "".join(
    f"<deltaPointDef><point>{i + 1}</point><priceScanDef><mult>1</mult><numerator>{n}</numerator>"
    f"<denominator>3</denominator></priceScanDef><volScanDef><mult>1</mult><numerator>0</numerator>"
    f"<denominator>1</denominator></volScanDef><weight>{w}</weight></deltaPointDef>"
    for i, (n, w) in enumerate(zip(range(-3, 4), [0.037, 0.111, 0.217, 0.270, 0.217, 0.111, 0.037]))
)


def write_file(path: Path, n_options: int, per_series: int = 1000) -> None:
    """Write the synthetic file (streamed to disk, a series at a time)."""
    with open(path, "w", encoding="ascii") as fh:
        fh.write(
            "<spanFile><fileFormat>4.00</fileFormat><definitions/><pointInTime><date>20240102</date>"
            "<isSetl>1</isSetl><clearingOrg><ec>BIG</ec><name>big</name><finalizeMeth>BY</finalizeMeth>"
            f"<pointDef><r>1</r>{_POINTS}{_DELTA}</pointDef><exchange><exch>BX</exch>"
            "<phyPf><pfId>1</pfId><pfCode>IDX</pfCode><currency>USD</currency><cvf>1</cvf>"
            "<phy><cId>1</cId><pe></pe><p>1000</p><d>1</d><v>0.2</v><cvf>1</cvf></phy></phyPf>"
            "<futPf><pfId>2</pfId><pfCode>IDX</pfCode><currency>USD</currency><cvf>1</cvf><valueMeth>FUT</valueMeth>"
            "<fut><cId>1</cId><pe>202403</pe><p>1000</p><d>1</d><cvf>1</cvf>"
            "<scanRate><r>1</r><priceScan>60</priceScan></scanRate>"
            "<ra><r>1</r>" + "".join(f"<a>{x}</a>" for x in range(16)) + "<d>1</d></ra></fut></futPf>"
            "<oopPf><pfId>3</pfId><pfCode>IDX</pfCode><currency>USD</currency><cvf>1</cvf><valueMeth>EQTY</valueMeth>"
            "<exercise>EURO</exercise>"
        )
        n_series = -(-n_options // per_series)
        ra_tail = "".join(f"<a>{-1.234567 * j:.12f}</a>" for j in range(1, 16))
        cid = 0
        for s in range(n_series):
            year, month = 2024 + s // 12, 1 + s % 12
            fh.write(
                f"<series><pe>{year}{month:02d}{s:04d}</pe><v>0.2</v><setlDate>{year}{month:02d}15</setlDate>"
                "<t>0.25</t><cvf>1</cvf><scanRate><r>1</r><priceScan>60</priceScan><volScanPct>0.2</volScanPct></scanRate>"
            )
            rows = []
            for k in range(min(per_series, n_options - cid)):
                cid += 1
                rows.append(
                    f"<opt><cId>{cid}</cId><o>{'C' if k % 2 else 'P'}</o><k>{500 + k:.6f}</k><p>{1.5 + k % 7:.9f}</p><d>0.000000</d>"
                    f"<v>0.2</v><ra><r>1</r><a>{k % 13}.5</a>{ra_tail}<d>0.{k % 9}</d></ra></opt>"
                )
            fh.write("".join(rows) + "</series>")
        fh.write(
            "</oopPf></exchange><ccDef><cc>IDX</cc><currency>USD</currency>"
            "<pfLink><exch>BX</exch><pfId>1</pfId><sc>1</sc></pfLink>"
            "<pfLink><exch>BX</exch><pfId>2</pfId><sc>1</sc></pfLink>"
            "<pfLink><exch>BX</exch><pfId>3</pfId><sc>1</sc></pfLink>"
            "<somTiers><tier><tn>1</tn><rate><r>1</r><val>1</val></rate></tier></somTiers>"
            "</ccDef></clearingOrg></pointInTime></spanFile>"
        )


def _measure(path: str) -> None:
    """In this process: read ``path``; print seconds, CPU seconds and peak RSS as JSON."""
    import resource
    import time

    from marginsim.io.span import read_span_xml

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0, c0 = time.perf_counter(), time.process_time()
    sf = read_span_xml(path)
    out = {
        "read_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0,
        "rss_before_mb": rss0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "n_options": sum(len(p.contracts) for p in sf.option_portfolios),
    }
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--options", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp"))
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        _measure(args.measure)
        return
    path = args.dir / f"marginsim_big_{args.options}.spn"
    if not path.exists():
        write_file(path, args.options)
    size = path.stat().st_size
    r = json.loads(
        subprocess.run(
            [sys.executable, __file__, "--measure", str(path)], check=True, capture_output=True, text=True
        ).stdout
    )
    print(
        f"{size / 1e6:.0f} MB, {r['n_options']:,} options: read {r['read_s']:.1f} s wall "
        f"({r['cpu_s']:.1f} s CPU), peak RSS {r['peak_rss_mb']:.0f} MB "
        f"({r['rss_before_mb']:.0f} MB before reading)"
    )


if __name__ == "__main__":
    main()
