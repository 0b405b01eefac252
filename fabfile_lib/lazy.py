"""A module imported on the first use of one of its names: the command's tasks name the transports, the
scheduler and the forwards, but a ``status`` with no lab, ``config show`` or ``--help`` uses none of them,
and Paramiko and Fabric are most of the tool's start-up."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any


class Module:
    """Stands for the module ``name`` until an attribute is asked for; then it is imported (once, by
    Python's own module cache) and the attribute is its."""

    def __init__(self, name: str):
        self._name = name

    def _module(self) -> ModuleType:
        return importlib.import_module(self._name)

    def __getattr__(self, attr: str):
        return getattr(self._module(), attr)


class Made:
    """Stands for the object ``make()`` returns until an attribute other than those ``known`` is asked for;
    then it is made (once). As a context manager it closes what was made, and nothing if nothing was: a
    ``status`` whose labs vouch for themselves makes (and imports) no connection at all."""

    def __init__(self, make: Callable[[], Any], **known: Any):
        self._make, self._made = make, None
        self.__dict__.update(known)

    def __getattr__(self, attr: str):
        if self._made is None:
            self._made = self._make()
        return getattr(self._made, attr)

    def __enter__(self) -> Made:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._made is not None:
            self._made.close()
