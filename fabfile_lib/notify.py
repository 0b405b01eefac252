"""A desktop notification where the laptop has a way to show one (``notify-send``, ``osascript``).

Never required and never an error: on a headless machine, or when the notifier fails, nothing happens.
"""

from __future__ import annotations

import shutil
import subprocess
import sys


def notify(title: str, text: str) -> bool:
    """Show ``text`` under ``title``; True if a notifier accepted it."""
    if sys.platform == "darwin" and shutil.which("osascript"):
        script = f"display notification {_applescript(text)} with title {_applescript(title)}"
        argv = ["osascript", "-e", script]
    elif shutil.which("notify-send"):
        argv = ["notify-send", "--app-name=fabfile-lab", title, text]
    else:
        return False
    try:
        return subprocess.run(argv, capture_output=True, timeout=5, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _applescript(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
