"""lab.idle: its setting, each app's way of being ended when unused, the batch script's lines, the reason
status gives -- and the node's watcher itself, run against a fake Jupyter server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fabfile_lib import apps, batch_script, idle_watch, slurm
from fabfile_lib.errors import ConfigError
from fabfile_lib.settings import LabSettings, duration_seconds


@pytest.mark.parametrize(("text", "seconds"), [("0", 0), ("", 0), ("2h", 7200), ("90m", 5400), ("1h30m", 5400),
                                               ("3600", 3600), ("2m", 120)])
def test_a_duration_is_read_as_seconds(text, seconds):
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize(("config", "words"), [
    ({"idle": "2 hours"}, "not a duration"), ({"idle": "30s"}, "under a minute"),
    ({"idle": "2h", "app": "marimo"}, "marimo has no way to tell"),
])
def test_a_bad_or_unusable_idle_is_one_line_before_anything_is_submitted(config, words):
    with pytest.raises(ConfigError, match=words):
        LabSettings.from_config({"login": "l", **config})


def test_jupyter_is_watched_from_the_node_and_an_app_with_its_own_setting_gets_it_only_when_asked():
    lab = "/h/.fabfile-lab/x-0011aabb"
    off = batch_script.render(LabSettings.from_config({"login": "l"}), lab)
    assert "lab_idle_watch\n" not in off and "LAB_IDLE=0 " in off
    on = batch_script.render(LabSettings.from_config({"login": "l", "idle": "2h"}), lab)
    assert "LAB_IDLE=7200 LAB_IDLE_WARN=600 LAB_IDLE_STEP=30" in on and on.rstrip().count("lab_idle_watch") >= 2
    code = batch_script.render(LabSettings.from_config({"login": "l", "idle": "2h", "app": "code-server"}), lab)
    assert '--idle-timeout-seconds="${LAB_IDLE}"' in code and "lab_idle_watch\n" not in code
    assert "grep -qF -- --idle-timeout-seconds || lab_fail" in code  # an older code-server: one line
    plain = batch_script.render(LabSettings.from_config({"login": "l", "app": "code-server"}), lab)
    assert "--idle-timeout-seconds" not in plain


def test_an_app_s_idle_declaration_is_checked():
    base = {"command": "x", "port_args": ["--port={port}"], "secret": "env", "secret_env": "T"}
    with pytest.raises(ConfigError, match="idle: args goes with idle_args"):
        apps.declared({"x": {**base, "idle": "args"}})
    with pytest.raises(ConfigError, match="belongs in idle_args only"):
        apps.declared({"x": {**base, "args": ["--t={idle}"]}})
    ok = apps.declared({"x": {**base, "idle": "args", "idle_args": ["--idle={idle}"]}})
    assert ok["x"].idle_args == ("--idle={idle}",)


def test_status_says_an_idle_lab_ended_of_lab_idle_though_slurm_says_it_completed():
    log = "fabfile-lab: ended: idle for 2:01 (lab.idle 2:00)\nfabfile-lab: jupyterlab exited with status 0\n"
    assert slurm.end_reason(None, "7", log, "COMPLETED") == "idle for 2:01, lab.idle"
    assert idle_watch.warn_before(7200) == 600 and idle_watch.warn_before(120) == 60
    assert idle_watch.step(120) == 15 and idle_watch.step(36000) == 30


class _Jupyter(BaseHTTPRequestHandler):
    """What the watcher asks: /api/status and /api/kernels, told not to count as activity."""

    busy = False
    connections = 0
    last = time.time()
    untracked = True

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).untracked &= "no_track_activity=1" in self.path
        if self.path.startswith("/api/status"):
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(type(self).last))
            body = {"last_activity": stamp, "connections": type(self).connections, "kernels": 1}
        else:
            body = [{"id": "k", "execution_state": "busy" if type(self).busy else "idle"}]
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def _watch(tmp_path, idle: float, warn: float, busy: bool, within: float) -> tuple[str, subprocess.Popen]:
    _Jupyter.busy, _Jupyter.last = busy, time.time()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Jupyter)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    (tmp_path / "token").write_text("t" * 43)
    app = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        watcher = subprocess.run([sys.executable, "-c", idle_watch._PYTHON, str(idle), str(warn), "0.1",
                                  f"127.0.0.1:{server.server_address[1]}", str(tmp_path), str(app.pid)],
                                 capture_output=True, text=True, timeout=within, check=False)
    except subprocess.TimeoutExpired:
        app.kill()
        app.wait()
        raise
    finally:
        server.shutdown()
    return watcher.stdout, app


def test_the_watcher_warns_then_ends_an_unused_app_and_leaves_its_note(tmp_path):
    out, app = _watch(tmp_path, idle=0.4, warn=0.2, busy=False, within=10)
    assert app.wait(timeout=10) != 0  # ended by the watcher (SIGTERM)
    lines = out.splitlines()
    assert lines[0].startswith("fabfile-lab: idle for") and "unless it is used (lab.idle)" in lines[0]
    assert lines[-1].startswith("fabfile-lab: ended: idle for")
    assert json.loads((tmp_path / "idle").read_text())["idle"] == 0.4
    assert _Jupyter.untracked  # its own questions never count as use


def test_a_busy_kernel_is_use_however_long_it_runs(tmp_path):
    with pytest.raises(subprocess.TimeoutExpired):
        _watch(tmp_path, idle=0.25, warn=0.1, busy=True, within=0.7)  # never ends it: the run times out instead
