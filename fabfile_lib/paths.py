"""Every path of the laptop the tool uses, in one place: where the user's config, the state (records,
allowed project files, control sockets) and the system's config are.

The XDG base directories, as the spec says (a variable that is unset or not absolute means its default);
``platformdirs`` would move a macOS user's state to ``~/Library`` under the same code, so the spec is
followed by hand here, in these few lines.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

APP = "fabfile-lab"
SYSTEM_CONFIG = Path("/etc/fabfile-lab.yaml")  # a site's defaults (read only if root's alone)
USER_CONFIG_FILE = "config.yaml"
ALLOWED_FILE = "allowed.json"  # project files the user allowed, by path and content hash


def _xdg(variable: str, default: Path) -> Path:
    value = os.environ.get(variable, "")
    return Path(value) if os.path.isabs(value) else default


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/fabfile-lab`` (``~/.config/fabfile-lab``)."""
    return _xdg("XDG_CONFIG_HOME", Path.home() / ".config") / APP


def state_dir(chosen: str = "") -> Path:
    """Where lab records live: ``chosen`` (``lab.state_dir``), else ``$XDG_STATE_HOME/fabfile-lab``
    (``~/.local/state/fabfile-lab``)."""
    if chosen:
        return Path(chosen).expanduser()
    return _xdg("XDG_STATE_HOME", Path.home() / ".local" / "state") / APP


def allowed_file() -> Path:
    """Always in the default state directory: ``lab.state_dir`` is a setting, and a setting must not choose
    what decides which settings are taken."""
    return state_dir() / ALLOWED_FILE


def runtime_dir() -> Path | None:
    """``$XDG_RUNTIME_DIR/fabfile-lab`` where the session has one (short, private: for sockets)."""
    base = _xdg("XDG_RUNTIME_DIR", Path())
    return base / APP if base != Path() else None


def shared_tmp(owner: str) -> Path:
    """A directory of ``owner``'s in the shared temporary directory (a last resort for short socket paths:
    its caller checks it is a real directory of the user's)."""
    return Path(tempfile.gettempdir()) / f"{APP}-{owner}"


def is_socket(path: str) -> bool:
    """Whether ``path`` is a Unix socket itself (not a link to one). A str, not a Path: it is looked at
    every second by held forwards, and pathlib interns every part of a path it parses."""
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except OSError:
        return False
