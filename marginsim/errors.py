"""Errors raised for bad input.

Every problem with user input (a scenario file, a clearing-house file, a CLI argument) is an
:class:`InputError` that names the file, the key path inside it and the problem, so that the CLI
can print one clear line and exit with status 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike


def format_key_path(path: Sequence[str | int] | str | None) -> str:
    """Render a key path such as ``("contracts", "ABC-P950", "strike")`` as ``contracts.ABC-P950.strike``.

    Integer items are list indices and render as ``positions[3]``.
    """
    if path is None:
        return ""
    if isinstance(path, str):
        return path
    out = ""
    for item in path:
        if isinstance(item, int):
            out += f"[{item}]"
        else:
            out += ("." if out else "") + str(item)
    return out


class InputError(ValueError):
    """Bad input: names the file, the key path and the problem.

    Parameters
    ----------
    problem
        What is wrong, in plain words.
    file
        The file the input came from (``None`` for input built in Python).
    key_path
        Where in the file: a dotted string or a sequence of keys and list indices.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | PathLike[str] | None = None,
        key_path: Sequence[str | int] | str | None = None,
    ) -> None:
        self.problem = problem
        self.file = None if file is None else str(file)
        self.key_path = format_key_path(key_path)
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file or "<input>"
        if self.key_path:
            where += f": {self.key_path}"
        return f"{where}: {self.problem}"
