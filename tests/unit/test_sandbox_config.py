"""Sandbox configuration validation (no root needed)."""

import pytest

from fabfile_lib import LabError
from fabfile_lib.sandbox import SandboxConfig


@pytest.mark.parametrize("field,value,words", [
    ("name", "Bad-Name", "sandbox.name"),
    ("name", "waytoolongname", "sandbox.name"),
    ("subnet", "8.8.8.0/24", "private"),
    ("subnet", "10.0.0.0/30", "/28"),
    ("subnet", "not-a-net", "IPv4"),
    ("dir", "relative/dir", "absolute"),
])
def test_invalid_settings_are_refused(field, value, words):
    with pytest.raises(LabError, match=words):
        SandboxConfig.from_mapping({field: value})


def test_addresses_are_derived_from_the_range():
    cfg = SandboxConfig.from_mapping({"name": "abc", "subnet": "10.9.8.0/24"})
    assert [cfg.address(h) for h in ("jump", "login", "compute")] == ["10.9.8.2", "10.9.8.6", "10.9.8.10"]
    assert cfg.addresses.login_from_compute == "10.9.8.9"
    assert cfg.netns("login") == "abc-login" and cfg.username == "abc-user"
