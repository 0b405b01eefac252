"""A module imported on the first use of one of its names: the command's tasks name the transports, the
scheduler and the forwards, but a ``status`` with no lab, ``config show`` or ``--help`` uses none of them,
and Paramiko and Fabric are most of the tool's start-up."""

from __future__ import annotations

import importlib
from types import ModuleType


class Module:
    """Stands for the module ``name`` until an attribute is asked for; then it is imported (once, by
    Python's own module cache) and the attribute is its."""

    def __init__(self, name: str):
        self._name = name

    def _module(self) -> ModuleType:
        return importlib.import_module(self._name)

    def __getattr__(self, attr: str):
        return getattr(self._module(), attr)
