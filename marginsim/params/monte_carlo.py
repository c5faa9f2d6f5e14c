"""``grid.monte_carlo``: the simulated price paths of a scenario grid (pydantic only).

Kept apart from :mod:`marginsim.params.cfd` (which re-exports it) because every scenario file's
``grid`` may name it, CFD or not.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ._base import Rate, StepDays, Vol
from ._base import StrictModel as _Model

__all__ = ["MonteCarloParams"]


class MonteCarloParams(_Model):
    """``grid.monte_carlo``: simulated price paths (adds dims ``step`` and ``path``).

    Geometric Brownian motion per underlying with a constant pairwise correlation, from the
    market price at step 0: ``S[s] = S[s-1] exp((drift - vol^2 / 2) dt + vol sqrt(dt) Z)``,
    ``dt = step_days / 365``. The random numbers come from ``numpy.random.default_rng(seed)``,
    so a file gives the same paths on every run.
    """

    paths: int = Field(ge=1, description="Number of paths (dim `path`).")
    steps: int = Field(ge=1, description="Number of steps after the start (dim `step` has steps + 1 points).")
    step_days: Annotated[StepDays, Field(gt=0)] = Field(1.0, description="Calendar days per step.")
    seed: int = Field(0, ge=0, description="Seed of the random generator.")
    vol: dict[str, Vol] = Field(
        default_factory=dict,
        description=(
            "Annualised vol per underlying [decimal]; default: market.<name>.vol. Underlyings with "
            "neither keep their price."
        ),
    )
    drift: Rate | dict[str, Rate] = Field(
        0.0, description="Annualised drift [decimal per year], one for all or per underlying."
    )
    correlation: Annotated[float, Field(gt=-1, lt=1)] = Field(
        0.0, description="Pairwise correlation of the simulated underlyings' returns."
    )
