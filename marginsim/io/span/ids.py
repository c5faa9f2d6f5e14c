"""Contract identifiers of a SPAN file's contracts (``PFCODE:KIND:PERIOD[:STRIKE]``).

Positions name the file's contracts as ``PFCODE:F:PERIOD`` (futures), ``PFCODE:C:PERIOD:STRIKE`` /
``PFCODE:P:PERIOD:STRIKE`` (options; strike as written in the file, trailing zeros dropped) and
``PFCODE:PHY`` (the one contract of a physical portfolio; ``PFCODE:PHY:PERIOD`` when it has
several). The reader checks that every contract of a file has its own identifier
(:mod:`~marginsim.io.span.checks`); :func:`~marginsim.io.span.to_model.file_contract_table` gives
them to the data model.
"""

from __future__ import annotations

import numpy as np

from .records import AnyPortfolio, OptionPortfolio, PhysicalPortfolio

__all__ = ["canonical_id", "contract_id", "portfolio_contract_ids", "strike_text"]


def strike_text(k: float) -> str:
    """A strike [price units] as written in an identifier: shortest round-trip text, no ``.0``."""
    text = repr(float(k))  # shortest round-trip text: 6.25, 7.5, 6.0
    if "e" in text or "E" in text:
        return np.format_float_positional(float(k), trim="-")
    return text[:-2] if text.endswith(".0") else text


def contract_id(pf_code: str, kind: str, period: str | None = None, strike: float | None = None) -> str:
    """The identifier of a file contract (see the module docstring).

    Parameters
    ----------
    pf_code
        The portfolio code (``pfCode``).
    kind
        ``PHY``, ``F`` (future), ``C`` or ``P`` (call or put option).
    period
        The file's period code (futures and options).
    strike
        The option's strike [price units] (options only).
    """
    if kind == "PHY":
        return f"{pf_code}:PHY"
    if kind == "F":
        return f"{pf_code}:F:{period}"
    if strike is None:
        raise ValueError(f"an option ({kind}) id needs a strike")
    return f"{pf_code}:{kind}:{period}:{strike_text(strike)}"


def canonical_id(text: str) -> str:
    """Normalise a user's identifier (strike spelling) to the canonical form."""
    parts = text.strip().split(":")
    if len(parts) == 4 and parts[1] in ("C", "P"):
        try:
            return contract_id(parts[0], parts[1], parts[2], float(parts[3]))
        except ValueError:
            return text
    return text.strip()


def portfolio_contract_ids(pf: AnyPortfolio) -> list[str]:
    """The identifiers of the contracts of one portfolio, in row order."""
    c = pf.contracts
    if isinstance(pf, PhysicalPortfolio):
        if len(c) == 1:
            return [contract_id(pf.pf_code, "PHY")]
        return [f"{pf.pf_code}:PHY:{pe}" for pe in c.period.tolist()]
    if isinstance(pf, OptionPortfolio):
        oc = pf.contracts
        code = pf.pf_code
        return [
            f"{code}:{'C' if call else 'P'}:{pe}:{strike_text(k)}"
            for call, pe, k in zip(oc.is_call.tolist(), oc.period.tolist(), oc.strike.tolist(), strict=True)
        ]
    return [contract_id(pf.pf_code, "F", pe) for pe in c.period.tolist()]
