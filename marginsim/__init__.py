"""marginsim: simulate broker and clearing-house margin over xarray scenario grids.

Quick use::

    import marginsim
    result = marginsim.margin("scenarios/span_seed_example.yaml")
    result["span"]          # an xarray Dataset: accounts x combined commodities x grid dims
    result.to_dict()        # the JSON contract of `marginsim margin FILE --json`
"""

from .api import build_inputs, load, margin
from .errors import InputError
from .limits import set_options
from .model import Inputs
from .result import MarginResult
from .scenario import ScenarioFile, load_scenario, parse_scenario

__version__ = "0.1.0"

__all__ = [
    "margin",
    "load",
    "load_scenario",
    "parse_scenario",
    "build_inputs",
    "Inputs",
    "MarginResult",
    "ScenarioFile",
    "InputError",
    "set_options",
    "__version__",
]
