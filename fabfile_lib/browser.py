"""Opening the lab in the browser, logged in, without putting its secret on a command line.

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
    """Write the lab's 0600 redirect page (in a 0700 directory); return its path. It logs in the app's way:
    on to the URL that carries the secret, or a form posted to the app's login path."""
    app = record.app_spec
    title = html.escape(f"{app.title} {record.name}")
    path = state.open_page_path(state_dir, record.name)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    if app.login == "form":
        action = record.base_url(port) + app.login_path
        body = (f"<body><form id=\"login\" method=\"post\" action=\"{html.escape(action)}\">"
                f"<input type=\"hidden\" name=\"{html.escape(app.login_field)}\" value=\"{html.escape(record.token)}\">"
                f"<noscript><button type=\"submit\">{title}</button></noscript></form>"
                "<script>document.getElementById(\"login\").submit();</script></body>")
        head = ""
    else:
        url = record.url(port)
        head = f"<meta http-equiv=\"refresh\" content=\"0;url={html.escape(url)}\">"
        body = (f"<body><script>window.location.replace({script_string(url)});</script>"
                f"<p><a href=\"{html.escape(url)}\">{title}</a></p></body>")
    page = f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">{head}<title>{title}</title></head>\n{body}</html>\n"
    state.write_private(path, page)
    return path


def open_lab(state_dir: Path, record: LabRecord, port: int) -> Path:
    """Open the lab in the browser through its redirect page; return the page's path."""
    path = redirect_file(state_dir, record, port)
    webbrowser.open(path.as_uri())
    return path


def open_url(url: str) -> None:
    """Open a URL that carries no secret (an added forward's: the app behind it has its own login, if any)."""
    webbrowser.open(url)
