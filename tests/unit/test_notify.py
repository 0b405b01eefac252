"""The desktop notification: shown through the laptop's own notifier where there is one, never an error."""

from __future__ import annotations

import sys

from fabfile_lib import notify


def _notifier(tmp_path, code: int = 0):
    fake = tmp_path / "notify-send"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{tmp_path}/shown"\nexit {code}\n')
    fake.chmod(0o755)
    return tmp_path / "shown"


def test_a_notification_goes_to_notify_send_with_its_title_and_text(tmp_path, monkeypatch):
    shown = _notifier(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "platform", "linux")
    assert notify.notify("JupyterLab on the cluster", "lab a: unused for a while") is True
    assert shown.read_text().splitlines() == ["--app-name=fabfile-lab", "JupyterLab on the cluster",
                                              "lab a: unused for a while"]


def test_no_notifier_or_a_failing_one_is_nothing_but_false(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert notify.notify("t", "x") is False  # a headless machine
    _notifier(tmp_path, code=1)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert notify.notify("t", "x") is False


def test_the_mac_s_notifier_gets_the_text_quoted_for_applescript():
    assert notify._applescript('say "hi" \\ there') == '"say \\"hi\\" \\\\ there"'
