"""Web apps other than JupyterLab, against the sandbox, in a real browser.

Each built-in app is started with ``--app``; the page the tool opens (its private redirect page) logs in in
Chromium, the app's own UI shows, and one action runs on the compute node and shows its hostname. Where
the app has a socket, it has no TCP port on the node; its secret is in no process's argv on any host (one
process table serves every sandbox host); cancel leaves nothing. Then an app declared in a config file
(a small web server with a token check, written here), an app without a secret (refused, then allowed),
and bad declarations (one line, no job).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from fabfile_lib.sandbox import SandboxConfig, code_server

from .conftest import assert_nothing_left, one_line_error, read_bytes, ssh, start_for_browser, wait_for

pytestmark = pytest.mark.sandbox

NOTEBOOK = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                       "source": ["import socket\n", "print(socket.gethostname() + '-ran')"]}],
            "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
            "nbformat": 4, "nbformat_minor": 5}
MARIMO = textwrap.dedent('''\
    import marimo

    app = marimo.App()


    @app.cell
    def _():
        import socket
        socket.gethostname() + "-ran"
        return


    if __name__ == "__main__":
        app.run()
    ''')
# A user's own app: serves its page only to a browser that logged in with the token from its file.
ECHO = textwrap.dedent('''\
    import http.server, socket, sys
    token_file, host, port = sys.argv[1:4]
    token = open(token_file).read().strip()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/health":
                return self._send(200, "ok")
            if self.path == "/?token=" + token:
                self.send_response(302)
                self.send_header("Set-Cookie", "echo=" + token + "; HttpOnly; Path=/")
                self.send_header("Location", "/")
                return self.end_headers()
            if ("echo=" + token) in (self.headers.get("Cookie") or ""):
                return self._send(200, "<h1 id='echo'>echo on " + socket.gethostname() + "</h1>")
            return self._send(403, "no")

        def _send(self, code, text):
            self.send_response(code)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(text.encode())

    http.server.HTTPServer((host, int(port)), Handler).serve_forever()
    ''')


def _folder(sbx: SandboxConfig, name: str) -> Path:
    folder = sbx.home / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    (folder / "host.ipynb").write_text(json.dumps(NOTEBOOK))
    (folder / "nb.py").write_text(MARIMO)
    (folder / "echo.py").write_text(ECHO)
    for path in (folder, *folder.iterdir()):
        shutil.chown(path, sbx.username, sbx.username)
    return folder


def _setup(sbx: SandboxConfig) -> list[str]:
    return [f"source {sbx.venv}/bin/activate", f"export PATH={code_server.binary(Path(sbx.code_server)).parent}:$PATH"]


def _argvs() -> str:
    """Every process's argv on the machine (every sandbox host's too)."""
    return "\n".join(read_bytes(p).replace(b"\0", b" ").decode(errors="replace")
                     for p in Path("/proc").glob("[0-9]*/cmdline"))


def _app_tcp_ports(sbx: SandboxConfig, rec: dict) -> list[str]:
    """The TCP ports the app's own process listens on, on the compute node (its kernels' are not its)."""
    sock = json.loads((Path(rec["remote_dir"]) / "runtime" / "app.json").read_text())["sock"]
    pids = [p.parent.name for p in Path("/proc").glob("[0-9]*/cmdline") if sock.encode() in read_bytes(p)]
    assert pids, f"no process of the app names its socket {sock}"
    out = subprocess.run(["nsenter", f"--net=/run/netns/{sbx.netns('compute')}", "ss", "-Hltnp"],
                         capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines() if any(f"pid={pid}," in line for pid in pids)]


def _notebook(page, base: str, node: str) -> None:
    page.locator(".jp-DirListing-item").first.wait_for(timeout=90_000)  # Notebook's tree
    page.goto(f"{base}/notebooks/host.ipynb")
    cell = page.locator(".jp-Cell").first
    page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for(timeout=90_000)
    out = cell.locator(".jp-OutputArea-output").first
    for attempt in range(3):
        cell.locator(".cm-content").click()
        page.keyboard.press("Shift+Enter")
        try:
            out.wait_for(timeout=15_000 * (attempt + 1))
            break
        except Exception:
            # As in JupyterLab (test_as_a_user.py): a run given while the kernel connects can be dropped; the
            # prompt then stays "[ ]" and nothing reached the server, so it is given again.
            if attempt == 2 or cell.locator(".jp-InputPrompt").inner_text().strip() not in ("[ ]:", "[ ]"):
                raise
    assert out.inner_text().strip() == f"{node}-ran"


def _marimo(page, base: str, node: str) -> None:
    page.goto(f"{base}/?file=nb.py")  # logged in: the session cookie the first page got
    editor = page.locator(".cm-content").first
    editor.wait_for(timeout=90_000)  # marimo's editor
    editor.click()
    page.keyboard.press("Shift+Enter")
    page.locator('[data-cell-role="output"]', has_text=f"{node}-ran").first.wait_for(timeout=60_000)


def _code_server(page, base: str, node: str, folder: Path) -> None:
    page.locator(".monaco-workbench").first.wait_for(timeout=120_000)  # VS Code's workbench
    page.wait_for_timeout(3000)
    page.keyboard.press("Control+Backquote")  # a terminal on the node
    page.locator(".xterm-screen").first.wait_for(timeout=60_000)
    page.wait_for_timeout(2000)  # its shell's prompt (drawn on a canvas: not in the page's text)
    target = folder / "code-server-hostname"
    for _ in range(3):  # keys typed before the terminal has the focus go elsewhere
        page.locator(".xterm-helper-textarea").first.focus()  # where xterm.js takes its keys
        page.keyboard.type(f"hostname > {folder}/code-server-hostname\n")
        try:
            wait_for(lambda: target.exists() and target.read_text().strip() == node, timeout=20)
            return
        except AssertionError:
            continue
    raise AssertionError(f"the terminal in code-server did not run hostname into {target}")


@pytest.mark.browser
@pytest.mark.parametrize("app,via", [("notebook", "compute"), ("marimo", "compute"), ("code-server", "compute"),
                                     ("notebook", "reverse")])
def test_each_app_opens_logged_in_and_runs_on_the_node(chromium, lab_cli, sbx, tmp_path, app, via):
    folder = _folder(sbx, f"app-{app}-{via}")
    cli = lab_cli(via=via, app=app, notebook_dir=f"~/{folder.name}", setup=_setup(sbx), wait_timeout=120)
    name, node = f"{app.replace('-', '')}{via[0]}", sbx.hostname("compute")
    rec, opened = start_for_browser(cli, name, tmp_path)
    assert rec["app"] == app and rec["token"] not in _argvs()
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
        page.goto(opened)
        base = f"http://127.0.0.1:{rec['forward_port']}"
        if app == "notebook":
            _notebook(page, base, node)
        elif app == "marimo":
            _marimo(page, base, node)
        else:
            _code_server(page, base, node, folder)
    except Exception:
        page.screenshot(path=str(tmp_path / "failed.png"), full_page=True)
        raise
    finally:
        context.close()
    status = json.loads(cli("lab.status", "--name", name, "--json").stdout)
    if app == "marimo":  # no socket listener: a port of the node's loopback, guarded by its token
        assert status["listens"].startswith("marimo on port") and "(token-only: marimo has no socket" in \
            status["listens"], status["listens"]
    else:
        assert rec["app_port"] == 0 and not _app_tcp_ports(sbx, rec)  # no TCP port of the app
        assert status["listens"].endswith("on a private socket"), status["listens"]
    assert rec["token"] not in _argvs()
    assert rec["token"] not in (Path(rec["remote_dir"]) / "job.log").read_text()  # marimo prints its URL: masked
    assert cli("lab.cancel", "--name", name).returncode == 0
    assert_nothing_left(sbx, cli, name)


def _echo_cli(lab_cli, sbx, folder: Path, **more):
    echo = {"title": "Echo", "command": "python3 echo.py", "args": ["{secret_file}", "{host}", "{port}"],
            "port_args": [], "secret": "file-arg", "ready_path": "/health", "open_path": "/"}
    plain = {"command": "python3 -m http.server", "port_args": ["--bind={host}", "{port}"], "secret": "none",
             "login": "none"}
    return lab_cli(notebook_dir=f"~/{folder.name}", setup=_setup(sbx), apps={"echo": echo, "plain": plain}, **more)


def test_an_app_declared_in_a_config_file_goes_through_the_whole_lifecycle(lab_cli, sbx, tmp_path):
    import requests

    folder = _folder(sbx, "app-echo")
    cli = _echo_cli(lab_cli, sbx, folder, app="echo")
    listed = cli("lab.apps").stdout
    assert "echo (default): Echo, `python3 echo.py`; TCP port, secret by file-arg;" in listed, listed
    rec, _ = start_for_browser(cli, "echo", tmp_path)
    url = json.loads(cli("lab.status", "--name", "echo", "--json").stdout)["url"]
    assert url == f"http://127.0.0.1:{rec['forward_port']}/?token={rec['token']}"
    session = requests.Session()
    page = session.get(url, timeout=10)
    assert page.status_code == 200 and f"echo on {sbx.hostname('compute')}" in page.text
    assert requests.get(f"http://127.0.0.1:{rec['forward_port']}/", timeout=10).status_code == 403
    assert cli("lab.tunnel", "--name", "echo", "--stop").returncode == 0
    assert cli("lab.tunnel", "--name", "echo", "--detach", "--no-browser").returncode == 0  # the same app again
    again = json.loads(cli("lab.status", "--name", "echo", "--json").stdout)["url"]
    assert session.get(again, timeout=10).status_code == 200  # the cookie is the host's, whatever the port
    other = _echo_cli(lab_cli, sbx, folder, app="echo", state_dir=str(tmp_path / "elsewhere"))  # another laptop
    attached = other("lab.attach", "--name", "echo", "--detach", "--no-browser")
    assert attached.returncode == 0, attached.stderr
    assert other.record("echo")["app"] == "echo" and "Echo: http://127.0.0.1:" in attached.stdout
    theirs = json.loads(other("lab.status", "--name", "echo", "--json").stdout)
    assert theirs["answers"] and "Echo on port" in theirs["listens"], theirs
    assert other("lab.tunnel", "--name", "echo", "--stop").returncode == 0
    assert rec["token"] not in _argvs()
    assert cli("lab.cancel", "--name", "echo").returncode == 0
    assert_nothing_left(sbx, cli, "echo")


def test_an_app_without_a_secret_is_refused_then_runs_when_allowed_and_status_says_so(lab_cli, sbx, tmp_path):
    folder = _folder(sbx, "app-plain")
    refused = _echo_cli(lab_cli, sbx, folder, app="plain")("lab.start", "--name", "plain", "--detach",
                                                            "--no-browser")
    assert refused.returncode != 0
    assert "the app plain has no secret: anyone on its node could reach it" in one_line_error(refused)
    assert not ssh(sbx, "login", f"squeue -h -u {sbx.username} -n lab-plain").stdout.strip()  # no job
    cli = _echo_cli(lab_cli, sbx, folder, app="plain", open_apps=["plain"])
    proc = cli("lab.start", "--name", "plain", "--detach", "--no-browser")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(cli("lab.status", "--name", "plain", "--json").stdout)
    assert status["answers"] and f"open to users of {sbx.hostname('compute')}" in status["listens"], status
    assert cli("lab.cancel", "--name", "plain").returncode == 0
    assert_nothing_left(sbx, cli, "plain")


@pytest.mark.parametrize("declaration,says", [
    ({"command": "", "secret": "none", "login": "none"}, "lab.apps.bad: command is empty"),
    ({"command": "srv", "secret": "cookie"}, "lab.apps.bad: secret 'cookie' is unknown"),
    ({"command": "srv", "secret": "file-arg", "args": ["{secret_file}"], "socket_args": ["--unix"]},
     "lab.apps.bad: socket_args must name the socket ({socket})"),
])
def test_a_bad_app_declaration_is_one_line_and_submits_nothing(lab_cli, sbx, declaration, says):
    cli = lab_cli(app="bad", apps={"bad": declaration})
    proc = cli("lab.start", "--name", "bad", "--detach", "--no-browser")
    assert proc.returncode != 0 and says in one_line_error(proc), proc.stderr
    assert not ssh(sbx, "login", f"squeue -h -u {sbx.username} -n lab-bad").stdout.strip()
    assert not (cli.state_dir / "labs" / "bad.json").exists()
