"""Whole-file checks of a SPAN XML file, made once when it is read.

What one record cannot tell: the scan points the risk arrays are losses at (``pointDef``), that
every contract has its own identifier and every portfolio its own id, and that what refers to
something (a ``pfLink`` to a portfolio, a spread leg to a combined commodity or a tier) finds it.
:func:`check_span_file` runs them on the records of a whole file
(:meth:`marginsim.io.span.reader.SpanReader.result`), so ``marginsim span-file`` and margining
refuse the same files with the same message: :class:`~marginsim.errors.InputError` naming the
file and the element path (``ccDef[2].pfLink[1]``, ``futPf[1].fut[3]``...).
"""

from __future__ import annotations

import numpy as np

from marginsim.errors import InputError

from .ids import portfolio_contract_ids
from .records import AnyPortfolio, DeltaSpread, OptionPortfolio, PhysicalPortfolio, SpanFile

__all__ = ["CLEARING_ORG_PATH", "check_span_file", "contract_path"]

#: Key path of the (one) clearing organisation of a file.
CLEARING_ORG_PATH = "spanFile.pointInTime.clearingOrg"


def check_span_file(sf: SpanFile) -> None:
    """Check a whole file; raise :class:`~marginsim.errors.InputError` at the first problem.

    Parameters
    ----------
    sf
        The records of the file (their ``key_path`` name the elements in errors).

    Raises
    ------
    InputError
        No ``pointDef``; a portfolio id (per exchange) or a contract identifier defined twice, or
        a contract id ``cId`` twice in a portfolio; a ``pfLink`` to a portfolio the file does not
        define, or a portfolio linked twice; a spread leg naming a combined commodity the file does
        not define, or an intra-commodity leg naming a tier its combined commodity does not define.
    """
    file = str(sf.path)
    if not sf.point_defs:
        raise InputError(
            "missing required element <pointDef>: the scan points the risk arrays are losses at",
            file=file,
            key_path=CLEARING_ORG_PATH,
        )
    _check_portfolios(sf, file)
    _check_links(sf, file)
    _check_spreads(sf, file)


def contract_path(pf: AnyPortfolio, row: int) -> str:
    """The key path of contract ``row`` (from 0) of portfolio ``pf`` (``....futPf[2].fut[4]``)."""
    if isinstance(pf, OptionPortfolio):
        si = pf.contracts.series_index
        s = int(si[row])
        k = row - int(np.searchsorted(si, s)) + 1  # options are in series order
        return f"{pf.key_path}.series[{s + 1}].opt[{k}]"
    tag = "phy" if isinstance(pf, PhysicalPortfolio) else "fut"
    return f"{pf.key_path}.{tag}[{row + 1}]"


def _first_repeat(keys: np.ndarray) -> tuple[int, int] | None:
    """The first row (in order) whose key an earlier row has, and that earlier row; None if none."""
    if keys.size < 2:
        return None
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    same = sk[1:] == sk[:-1]
    if not same.any():
        return None
    again = order[1:][same]
    i = int(again.min())
    first = int(order[np.searchsorted(sk, keys[i])])
    return i, first


def _check_portfolios(sf: SpanFile, file: str) -> None:
    """Portfolio ids unique per exchange, ``cId`` unique per portfolio, identifiers unique."""
    seen: dict[tuple[str, int], AnyPortfolio] = {}
    pfs = sf.portfolios()
    for pf in pfs:
        other = seen.setdefault((pf.exchange, pf.pf_id), pf)
        if other is not pf:
            raise InputError(
                f"portfolio id {pf.pf_id} of exchange {pf.exchange} is defined twice (first at "
                f"{other.key_path})",
                file=file,
                key_path=f"{pf.key_path}.pfId",
            )
        rep = _first_repeat(np.asarray(pf.contracts.ids))
        if rep is not None:
            i, first = rep
            raise InputError(
                f"contract id <cId> {int(pf.contracts.ids[i])} is defined twice in its portfolio "
                f"(first at {contract_path(pf, first)})",
                file=file,
                key_path=f"{contract_path(pf, i)}.cId",
            )
    _check_identifiers(pfs, file)


def _check_identifiers(pfs: tuple[AnyPortfolio, ...], file: str) -> None:
    """Every contract has its own identifier ``PFCODE:KIND:PERIOD[:STRIKE]``.

    Compared as numbers, not as text (a file of a million options would otherwise hold a million
    identifier strings at once): two identifiers are the same exactly when the portfolio code, the
    kind (a lone physical, physicals by period, future, call, put), the period text and the strike's
    bits (its shortest round-trip text, :func:`~marginsim.io.span.ids.strike_text`) are. Codes and
    periods are numbered through their distinct values, portfolio by portfolio.
    """
    code_ids: dict[str, int] = {}
    period_ids: dict[str, int] = {}
    columns: list[np.ndarray] = []
    for pf in pfs:
        c = pf.contracts
        n = len(c)
        if not n:
            continue
        if isinstance(pf, OptionPortfolio):
            kind = np.where(pf.contracts.is_call, 3, 4)
            strike = np.ascontiguousarray(pf.contracts.strike, dtype=np.float64).view(np.int64)
        else:
            kind = np.full(n, 2 if not isinstance(pf, PhysicalPortfolio) else 0 if n == 1 else 1)
            strike = np.zeros(n, dtype=np.int64)
        uniq, inverse = np.unique(np.asarray(c.period), return_inverse=True)
        period = np.array([period_ids.setdefault(str(u), len(period_ids)) for u in uniq.tolist()], np.int64)
        period = period[inverse.reshape(-1)] if n > 1 or kind[0] != 0 else np.zeros(n, np.int64)
        code = code_ids.setdefault(pf.pf_code, len(code_ids))
        columns.append(np.stack([np.full(n, code), kind, period, strike]).astype(np.int64))
    if not columns:
        return
    keys = np.concatenate(columns, axis=1)  # (4, contracts of the file)
    order = np.lexsort(keys[::-1])
    sk = keys[:, order]
    same = (sk[:, 1:] == sk[:, :-1]).all(axis=0)
    if not same.any():
        return
    again = order[1:][same]
    i = int(again.min())  # the first contract (in file order) whose identifier came before
    run = np.flatnonzero(~np.concatenate([[False], same]))  # sorted positions where a key starts
    pos = int(np.flatnonzero(order == i)[0])
    first = int(order[run[np.searchsorted(run, pos, side="right") - 1]])
    sizes = np.array([len(p.contracts) for p in pfs])
    starts = np.concatenate([[0], np.cumsum(sizes)])

    def where(row: int) -> tuple[AnyPortfolio, int]:
        k = int(np.searchsorted(starts, row, side="right") - 1)
        return pfs[k], row - int(starts[k])

    pf_i, row_i = where(i)
    pf_f, row_f = where(first)
    name = portfolio_contract_ids(pf_i)[row_i]
    raise InputError(
        f"contract {name} is defined twice (first at {contract_path(pf_f, row_f)}); "
        "each contract of the file needs its own portfolio code, period and strike",
        file=file,
        key_path=contract_path(pf_i, row_i),
    )


def _check_links(sf: SpanFile, file: str) -> None:
    """Every ``pfLink`` finds its portfolio, and no portfolio is linked twice."""
    known = {(pf.exchange, pf.pf_id) for pf in sf.portfolios()}
    linked: dict[tuple[str, int], str] = {}
    for cc in sf.combined_commodities.values():
        for j, link in enumerate(cc.pf_links, 1):
            where = f"{cc.key_path}.pfLink[{j}]"
            key = (link.exchange, link.pf_id)
            if key not in known:
                raise InputError(
                    f"links portfolio {link.pf_id} of exchange {link.exchange}, which the file does not define",
                    file=file,
                    key_path=where,
                )
            if key in linked:
                raise InputError(
                    f"portfolio {link.pf_id} of exchange {link.exchange} is linked twice (first at {linked[key]})",
                    file=file,
                    key_path=where,
                )
            linked[key] = where


def _check_spreads(sf: SpanFile, file: str) -> None:
    """Every spread leg names a defined combined commodity; intra legs a defined intra tier."""
    ccs = sf.combined_commodities

    def legs(sp: DeltaSpread, intra: bool) -> None:
        seen: dict[str, int] = {}
        for leg in sp.legs:
            seen[leg.tag] = j = seen.get(leg.tag, 0) + 1
            where = f"{sp.key_path}.{leg.tag}[{j}]"
            if leg.cc not in ccs:
                raise InputError(
                    f"spread {sp.spread} names combined commodity {leg.cc!r}, which the file does not define",
                    file=file,
                    key_path=f"{where}.cc",
                )
            if intra and leg.tier != 0 and leg.tier not in {t.tn for t in ccs[leg.cc].intra_tiers}:
                raise InputError(
                    f"spread {sp.spread} names tier {leg.tier}, which <intraTiers> of {leg.cc} does not define",
                    file=file,
                    key_path=f"{where}.tn",
                )

    for cc in ccs.values():
        for sp in cc.d_spreads:
            legs(sp, True)
    for sp in (*sf.super_spreads, *sf.inter_spreads):
        legs(sp, False)
