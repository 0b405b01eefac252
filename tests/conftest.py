"""Shared fixtures: the test sandbox, brought up once per session and always taken down.

The test sandbox has its own name, range and directory, so it runs beside a sandbox a developer has up.
Where a sandbox cannot run (not root, no network namespaces) its tests are skipped on a developer's
machine and *fail* under CI=true: CI must never go green without having run them.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from fabfile_lib import sandbox
from fabfile_lib.sandbox import SandboxConfig

TEST_SANDBOX = SandboxConfig(name="fltest", subnet="10.251.0.0/24", dir="/var/tmp/fabfile-lab/fltest")


def sandbox_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the sandbox needs root"
    if shutil.which("ip") is None:
        return "iproute2 is missing"
    if subprocess.run(["ip", "netns", "list"], capture_output=True, check=False).returncode != 0:
        return "network namespaces are unavailable"
    return None


def require_sandbox() -> None:
    reason = sandbox_unavailable()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"sandbox test cannot run under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def sbx() -> SandboxConfig:
    require_sandbox()
    try:
        sandbox.up(TEST_SANDBOX, echo=lambda _msg: None)
    except Exception:
        sandbox.down(TEST_SANDBOX, echo=lambda _msg: None)
        raise
    yield TEST_SANDBOX
    sandbox.down(TEST_SANDBOX, echo=lambda _msg: None)


def ssh(cfg: SandboxConfig, host: str, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh", "-F", str(cfg.ssh_config), host, command],
                          capture_output=True, text=True, timeout=timeout, check=False)
