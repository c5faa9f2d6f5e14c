"""marginsim: simulate broker and clearing-house margin over xarray scenario grids.

Quick use::

    import marginsim
    result = marginsim.margin("scenarios/span_seed_example.yaml")
    result["span"]          # an xarray Dataset: accounts x combined commodities x grid dims
    result.to_dict()        # the JSON contract of `marginsim margin FILE --json`

``import marginsim`` is light (no numpy, xarray, pandas, numba or dask): the names below are
imported from their modules on first use (PEP 562), so that ``marginsim --help`` starts at once.
Log messages go to the ``marginsim`` logger (:mod:`logging`; one logger per module below it);
the command line shows them with ``-v`` (INFO) and ``-vv`` (DEBUG).
"""

import logging as _logging
from typing import TYPE_CHECKING

from .lazy import lazy_attributes

if TYPE_CHECKING:  # the lazy names, for type checkers and IDEs
    from .api import build_inputs, load, margin
    from .backtesting import backtest
    from .errors import InputError
    from .limits import set_options
    from .model import Inputs
    from .result import MarginResult
    from .scenario import ScenarioFile, load_scenario, parse_scenario
    from .whatif import WhatIfResult, best_hedge, what_if

__version__ = "0.1.0"

__all__ = [
    "margin",
    "backtest",
    "load",
    "load_scenario",
    "parse_scenario",
    "build_inputs",
    "Inputs",
    "MarginResult",
    "ScenarioFile",
    "InputError",
    "set_options",
    "what_if",
    "best_hedge",
    "WhatIfResult",
    "__version__",
]

#: Public name -> the module that defines it (imported on first use of the name).
_LAZY = {
    "margin": "marginsim.api",
    "backtest": "marginsim.backtesting",
    "load": "marginsim.api",
    "build_inputs": "marginsim.api",
    "Inputs": "marginsim.model",
    "MarginResult": "marginsim.result",
    "ScenarioFile": "marginsim.scenario",
    "load_scenario": "marginsim.scenario",
    "parse_scenario": "marginsim.scenario",
    "InputError": "marginsim.errors",
    "set_options": "marginsim.limits",
    "what_if": "marginsim.whatif",
    "best_hedge": "marginsim.whatif",
    "WhatIfResult": "marginsim.whatif",
}

# a library does not print log records of its own accord: the application configures handlers
_logging.getLogger(__name__).addHandler(_logging.NullHandler())


__getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY)
