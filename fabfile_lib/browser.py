"""Opening the lab in the browser without putting its token on a command line.

A browser started with ``http://...?token=...`` carries the token in its argv, which every local user can
read (``/proc/PID/cmdline``). Like jupyter_server (``use_redirect_file``), the browser is opened on a
private file instead: a 0600 page in the state directory that sends it on to the lab's URL.
"""

from __future__ import annotations

import html
import json
import webbrowser
from pathlib import Path

from . import state
from .state import LabRecord


def script_string(text: str) -> str:
    """``text`` as a JavaScript string literal that cannot end the ``<script>`` element it stands in (no raw
    ``<``, ``>`` or ``&``), whatever it holds."""
    return json.dumps(text).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def redirect_file(state_dir: Path, record: LabRecord, port: int) -> Path:
    """Write the lab's 0600 redirect page (in a 0700 directory); return its path."""
    url = record.url(port)
    path = state.open_page_path(state_dir, record.name)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    state.write_private(path, (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"refresh\" content=\"0;url={html.escape(url)}\">"
        f"<title>JupyterLab {html.escape(record.name)}</title></head>\n"
        f"<body><script>window.location.replace({script_string(url)});</script>"
        f"<p><a href=\"{html.escape(url)}\">JupyterLab {html.escape(record.name)}</a></p></body></html>\n"))
    return path


def open_lab(state_dir: Path, record: LabRecord, port: int) -> Path:
    """Open the lab in the browser through its redirect page; return the page's path."""
    path = redirect_file(state_dir, record, port)
    webbrowser.open(path.as_uri())
    return path
