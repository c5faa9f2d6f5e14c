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
    names = [portfolio_contract_ids(pf) for pf in pfs]
    if not any(names):
        return
    owner = np.repeat(np.arange(len(pfs)), [len(n) for n in names])
    row = np.concatenate([np.arange(len(n)) for n in names])
    flat = np.array([x for n in names for x in n], dtype=np.str_)
    rep = _first_repeat(flat)
    if rep is not None:
        i, first = rep
        raise InputError(
            f"contract {flat[i]} is defined twice (first at {contract_path(pfs[owner[first]], int(row[first]))}); "
            "each contract of the file needs its own portfolio code, period and strike",
            file=file,
            key_path=contract_path(pfs[owner[i]], int(row[i])),
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
        for j, leg in enumerate(sp.legs, 1):
            where = f"{sp.key_path}.tLeg[{j}]"
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
