"""Defaults of study runs, shared by :mod:`marginsim.studies.runner` and the command line
(this module imports nothing: the parser of ``marginsim study`` shows them without importing the
runner)."""

__all__ = ["DEFAULT_TIMEOUT", "DEFAULT_OUT"]

#: Default per-cell execution timeout [s].
DEFAULT_TIMEOUT = 600.0
#: Default output folder of reports and executed notebooks.
DEFAULT_OUT = "reports"
