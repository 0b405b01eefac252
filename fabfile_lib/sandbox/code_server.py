"""code-server for the compute node, from the npm registry, built once and shared by every sandbox (a cache
kept by ``down``, like the Python environment).

Its npm package cannot simply be installed here: as root its postinstall refuses to run, and its
``@vscode/ripgrep`` step would download ``rg`` from outside the registries. So the package goes in with
``--ignore-scripts``, and its postinstall's steps are run here: VS Code's dependencies (native modules
built against the system's Node.js headers, ``npm_config_nodedir=/usr``), with ripgrep's binary the
distribution's ``rg`` (that package skips its download when its ``bin/rg`` exists), then the symlinks
it makes, then the extensions' dependencies.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from ..errors import LabError

_log = logging.getLogger(__name__)
PACKAGE = "code-server@4"
READY_MARK = ".fabfile-lab-ready"
APT = {"rg": "ripgrep"}  # and libkrb5-dev's headers (kerberos, for a native module), checked by path
KRB5_HEADER = Path("/usr/include/krb5.h")


def binary(where: Path) -> Path:
    return where / "node_modules" / ".bin" / "code-server"


def ready(where: Path) -> bool:
    return (where / READY_MARK).exists() and binary(where).exists()


def missing_packages() -> list[str]:
    missing = [pkg for prog, pkg in APT.items() if shutil.which(prog) is None]
    return missing + ([] if KRB5_HEADER.exists() else ["libkrb5-dev"])


def ensure(where: Path, echo: Callable[[str], None] = _log.info) -> None:
    """code-server under ``where`` (its binary: :func:`binary`), built unless it is there already."""
    if ready(where):
        return
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise LabError("code-server needs Node.js 20 and npm (apt install nodejs npm), which are missing here.")
    echo(f"code-server: installing {PACKAGE} into {where} from the npm registry (once; a few minutes)...")
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(mode=0o755, parents=True)
    env = {**os.environ, "npm_config_nodedir": "/usr", "npm_config_yes": "true", "npm_config_fund": "false",
           "npm_config_audit": "false", "npm_config_update_notifier": "false"}
    _npm(["install", "--ignore-scripts", PACKAGE], where, env)
    _npm(["rebuild", "argon2"], where, env)  # the one native module of code-server itself
    vscode = where / "node_modules" / "code-server" / "lib" / "vscode"
    _npm(["install", "--omit=dev", "--ignore-scripts"], vscode, env)
    ripgrep = vscode / "node_modules" / "@vscode" / "ripgrep" / "bin"
    ripgrep.mkdir(parents=True, exist_ok=True)
    (ripgrep / "rg").unlink(missing_ok=True)
    (ripgrep / "rg").symlink_to(shutil.which("rg") or "/usr/bin/rg")
    _npm(["rebuild", "--omit=dev"], vscode, env)
    _link(vscode / "node_modules.asar", "node_modules")
    _link(vscode / "bin" / "remote-cli" / "code-server", "code-linux.sh")
    _link(vscode / "bin" / "helpers" / "browser.sh", "browser-linux.sh")
    _npm(["install", "--omit=dev"], vscode / "extensions", env)
    (where / READY_MARK).touch()


def _link(path: Path, target: str) -> None:
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(target)


def _npm(args: list[str], cwd: Path, env: dict) -> None:
    proc = subprocess.run(["npm", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False,
                          timeout=1800)
    if proc.returncode != 0:
        tail = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        raise LabError(f"code-server: `npm {' '.join(args)}` in {cwd} failed: {tail[-1] if tail else proc.returncode}")
