"""Studies: parameterised notebooks (``notebooks/``), papermill runs and HTML reports.

- :mod:`marginsim.studies.runner`: find, run and export study notebooks (``marginsim study``).
- :mod:`marginsim.studies.books`: what the notebooks compute (what-if variants of a scenario,
  summary tables), each in one call over grid dims or accounts.
- :mod:`marginsim.plots`: the plotly figures, and the offline renderer the notebooks use.

The names below are imported from their modules on first use (PEP 562): the command line
builds ``marginsim study`` without importing the data model or the notebook machinery.
"""

from typing import TYPE_CHECKING

from ..lazy import lazy_attributes

if TYPE_CHECKING:  # the lazy names, for type checkers and IDEs
    from .books import (
        applicable_methods,
        attribution_table,
        balances_before_after,
        base_point,
        best_hedge_table,
        cfd_leverage_book,
        connect,
        decision_point,
        grid_point_text,
        headline,
        hedge_grid,
        largest_account,
        leverage_grid,
        load_book,
        margin_by_method,
        movements,
        pm_top_driver,
        report_table,
        straight_path,
        summary_table,
        trade_legs,
        what_if_table,
        with_grid,
        without_group,
    )
    from .runner import (
        KERNEL_NAME,
        Study,
        StudyError,
        StudyRun,
        atomic_write_text,
        ensure_kernel,
        export_html,
        external_resources,
        get_study,
        list_studies,
        notebooks_dir,
        run_all,
        run_study,
        study_parameters,
    )

#: Public name -> the module that defines it (imported on first use of the name).
_LAZY = {
    "applicable_methods": "marginsim.studies.books",
    "balances_before_after": "marginsim.studies.books",
    "base_point": "marginsim.studies.books",
    "cfd_leverage_book": "marginsim.studies.books",
    "connect": "marginsim.studies.books",
    "decision_point": "marginsim.studies.books",
    "grid_point_text": "marginsim.studies.books",
    "headline": "marginsim.studies.books",
    "leverage_grid": "marginsim.studies.books",
    "load_book": "marginsim.studies.books",
    "margin_by_method": "marginsim.studies.books",
    "movements": "marginsim.studies.books",
    "pm_top_driver": "marginsim.studies.books",
    "report_table": "marginsim.studies.books",
    "straight_path": "marginsim.studies.books",
    "summary_table": "marginsim.studies.books",
    "with_grid": "marginsim.studies.books",
    "without_group": "marginsim.studies.books",
    "largest_account": "marginsim.studies.books",
    "attribution_table": "marginsim.studies.books",
    "trade_legs": "marginsim.studies.books",
    "what_if_table": "marginsim.studies.books",
    "best_hedge_table": "marginsim.studies.books",
    "hedge_grid": "marginsim.studies.books",
    "KERNEL_NAME": "marginsim.studies.runner",
    "Study": "marginsim.studies.runner",
    "StudyError": "marginsim.studies.runner",
    "StudyRun": "marginsim.studies.runner",
    "atomic_write_text": "marginsim.studies.runner",
    "ensure_kernel": "marginsim.studies.runner",
    "export_html": "marginsim.studies.runner",
    "external_resources": "marginsim.studies.runner",
    "get_study": "marginsim.studies.runner",
    "list_studies": "marginsim.studies.runner",
    "notebooks_dir": "marginsim.studies.runner",
    "run_all": "marginsim.studies.runner",
    "run_study": "marginsim.studies.runner",
    "study_parameters": "marginsim.studies.runner",
}

__all__ = [
    "KERNEL_NAME",
    "Study",
    "StudyError",
    "StudyRun",
    "applicable_methods",
    "atomic_write_text",
    "balances_before_after",
    "base_point",
    "cfd_leverage_book",
    "connect",
    "decision_point",
    "ensure_kernel",
    "export_html",
    "external_resources",
    "get_study",
    "grid_point_text",
    "hedge_grid",
    "headline",
    "leverage_grid",
    "list_studies",
    "load_book",
    "margin_by_method",
    "movements",
    "notebooks_dir",
    "pm_top_driver",
    "report_table",
    "run_all",
    "run_study",
    "straight_path",
    "study_parameters",
    "summary_table",
    "with_grid",
    "without_group",
    "largest_account",
    "attribution_table",
    "trade_legs",
    "what_if_table",
    "best_hedge_table",
]


__getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY)
