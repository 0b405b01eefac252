"""Honest platforms: the package imports and keeps its records where ``fcntl`` and user ids do not exist
(Windows), simulated here in a subprocess: ``fcntl`` made unimportable, ``os.getuid``/``os.geteuid`` gone,
once the libraries it uses are loaded."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The libraries are imported first: on Windows they take their own Windows branches, which cannot be
# simulated here; what is tested is that this package needs neither.
SIMULATION = """
import os, sys
import fabric, filelock, invoke, invoke.terminals, paramiko, rich, yaml  # noqa
sys.modules["fcntl"] = None  # `import fcntl` raises ImportError, as on Windows
for name in ("getuid", "geteuid", "getgid", "getegid"):
    if hasattr(os, name):
        delattr(os, name)
"""


def _run(body: str, tmp_path: Path) -> subprocess.CompletedProcess:
    code = SIMULATION + textwrap.dedent(body)
    env = {"PYTHONPATH": str(REPO), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
           "XDG_STATE_HOME": str(tmp_path / "state"),
           "USERNAME": "researcher"}  # Windows always sets it: getpass.getuser() reads it there
    return subprocess.run([sys.executable, "-P", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env=env)


def test_every_module_imports_without_fcntl_or_user_ids(tmp_path):
    proc = _run("""
        import importlib, pkgutil, fabfile_lib
        names = [m.name for m in pkgutil.walk_packages(fabfile_lib.__path__, "fabfile_lib.")
                 if ".sandbox" not in m.name and m.name != "fabfile_lib.tasks.sandbox"]  # the sandbox is Linux's
        for name in names:
            importlib.import_module(name)
        print(len(names))
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 30


def test_records_locks_config_files_and_the_socket_directory_work_without_them(tmp_path):
    proc = _run("""
        from pathlib import Path
        from fabfile_lib import config_trust, file_trust, master, master_address, state
        here = Path.cwd()
        record = state.LabRecord("a", {"login": "l"}, "42", "/h/.fabfile-lab/a-0011aabb", "t" * 43, "compute")
        assert state.create(here / "st", record) and not state.create(here / "st", record)
        assert state.update(here / "st", "a", node="n1").node == "n1" and state.load(here / "st", "a").node == "n1"
        assert file_trust.me() is None and file_trust.untrusted_because(here) == ""
        (here / "fabfile-lab.yaml").write_text("lab: {name: x, login: y}\\n")
        found = config_trust.read(here / "fabfile-lab.yaml", "project")
        assert found.data == {"lab": {"name": "x"}} and found.refused == ("lab.login",), found
        assert master_address.control_dir(here / "st").is_dir()
        print("ok")
    """, tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
