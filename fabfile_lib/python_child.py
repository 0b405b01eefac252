"""Starting a Python process of the tool's own (the background forward): what it runs, where, with what.

``python -m PKG.MOD`` puts the current directory first on ``sys.path``, ahead of ``PYTHONPATH``: a
``paramiko.py`` or a ``fabric/`` in the directory where the user typed the command would be imported by the
child and run as the user. So the child starts in a directory of the user's own (the state directory,
0700), with Python's safe-path mode (``-P``, Python 3.11+; ``PYTHONSAFEPATH=1`` for its own children),
with this very package first on its path, and with the environment it needs rather than whatever the
shell had (no ``PYTHONSTARTUP``, ``PYTHONHOME``, ``LD_PRELOAD`` or a ``PATH`` entry relative to somewhere).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

# What ssh, a notifier and the tool itself read from the environment; nothing else reaches the child.
_KEPT = frozenset({
    "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR",
    "SSH_AUTH_SOCK", "SSH_ASKPASS", "SSH_ASKPASS_REQUIRE", "SSH_SK_PROVIDER", "KRB5CCNAME", "KRB5_CONFIG",
    "DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY", "DBUS_SESSION_BUS_ADDRESS",
    "SYSTEMROOT", "USERPROFILE", "APPDATA", "LOCALAPPDATA", "COMSPEC", "PATHEXT",  # Windows
    "FLAB_COMMAND_STYLE", "INVOKE_LAB_DEBUG",  # the tool's own (commands.py, tasks/__init__.py)
})
_KEPT_PREFIXES = ("LC_", "XDG_")


def package_root() -> str:
    """The directory holding this package (site-packages, or a clone of the repository)."""
    return str(Path(__file__).resolve().parent.parent)


def environment(source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: the kept variables of ``source`` (this process's by default), a ``PATH`` of
    absolute directories only, and a Python path of this package alone, in safe-path mode."""
    source = os.environ if source is None else source
    env = {k: v for k, v in source.items() if k in _KEPT or k.startswith(_KEPT_PREFIXES)}
    path = [p for p in source.get("PATH", os.defpath).split(os.pathsep) if os.path.isabs(p)]
    env["PATH"] = os.pathsep.join(path) or os.defpath
    env["PYTHONPATH"] = package_root()
    env["PYTHONSAFEPATH"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # nothing written beside the package by a background process
    # glibc gives each thread that allocates an arena of its own, up to eight per core, each keeping pages
    # it once touched: in a process with a thread per lab that is memory held for no throughput (elsewhere
    # the variable means nothing).
    env["MALLOC_ARENA_MAX"] = "2"
    return env


def argv(module: str, *args: str) -> list[str]:
    """``python -P -m MODULE ARGS``: the interpreter running the tool, never the current directory first."""
    safe = ["-P"] if sys.version_info >= (3, 11) else []  # before 3.11 the private cwd is the guard
    return [sys.executable, *safe, "-m", module, *args]
