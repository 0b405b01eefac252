"""ssh entries for IDEs."""

from __future__ import annotations

import subprocess

from fabfile_lib import ide
from fabfile_lib.settings import LabSettings
from fabfile_lib.state import LabRecord


def test_ide_entries_chain_every_hop_with_proxyjump(tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text("Host jump\n    HostName 10.0.0.1\n    User me\n\n"
                      "Host login\n    HostName 10.0.0.2\n    User me\n    ProxyJump jump\n")
    settings = LabSettings.from_config({"login": "login", "ssh_config": str(config), "state_dir": str(tmp_path)})
    record = LabRecord("nb", {}, "42", "/d", "t", "compute", node="c1", node_addr="10.0.1.5")
    text = ide.ssh_entries(settings, record)
    hosts = [ln.split()[1] for ln in text.splitlines() if ln.startswith("Host ")]
    assert len(hosts) == 3 and hosts[-1] == "fabfile-lab-nb"
    assert f"ProxyJump {hosts[0]}" in text and f"ProxyJump {hosts[1]}" in text
    assert "HostName 10.0.1.5" in text and "ControlPath " in text and "StrictHostKeyChecking yes" in text
    proc = subprocess.run(["ssh", "-F", "/dev/stdin", "-G", "fabfile-lab-nb"], input=text, text=True,
                          capture_output=True, check=False)
    assert proc.returncode == 0 and f"proxyjump {hosts[1]}" in proc.stdout.lower()
