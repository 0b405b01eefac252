"""Our forward_local against a fake transport: the defects of Fabric's stock one must not recur."""

from __future__ import annotations

import socket
import threading
import time

import paramiko
import pytest

from fabfile_lib import LabError
from fabfile_lib.forwards.paramiko_forward import forward_local


class FakeChannel:
    """A socket standing in for a Paramiko channel (select(), recv, sendall, shutdown_write, close)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self, n: int) -> bytes:
        return self.sock.recv(n)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def shutdown_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()


class FakeTransport:
    """Fails the first ``failures`` channel opens, then connects each channel to an upper-casing echo."""

    def __init__(self, failures: int = 0):
        self.failures = failures
        self.opened: list[tuple] = []

    def is_active(self) -> bool:
        return True

    def open_channel(self, kind, dest, src, timeout=None):
        self.opened.append((kind, dest))
        if self.failures:
            self.failures -= 1
            raise paramiko.ChannelException(2, "Connect failed")
        ours, theirs = socket.socketpair()

        def echo() -> None:
            chunks = []
            while data := theirs.recv(65536):
                chunks.append(data)
            theirs.sendall(b"".join(chunks).upper())  # answers only after EOF: needs half-close
            theirs.close()

        threading.Thread(target=echo, daemon=True).start()
        return FakeChannel(ours)


def _roundtrip(port: int, payload: bytes, family=socket.AF_INET, host="127.0.0.1") -> bytes:
    with socket.socket(family) as sock:
        sock.settimeout(5)
        sock.connect((host, port))
        out = b""
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            while data := sock.recv(65536):
                out += data
        except (ConnectionResetError, BrokenPipeError, OSError) as exc:
            if out or exc.errno not in (104, 107, 32):  # reset / not connected / broken pipe: closed
                raise
        return out


def test_busy_port_fails_the_with_statement_itself():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(LabError, match=f"local port {port} is already in use"), \
                forward_local(FakeTransport(), "127.0.0.1", 8888, port):
            pytest.fail("the body must not run without a listener")


def test_a_failed_channel_open_does_not_stop_the_forward():
    transport = FakeTransport(failures=1)
    with forward_local(transport, "127.0.0.1", 8888) as fwd:
        assert _roundtrip(fwd.port, b"first") == b""  # closed: Jupyter was not listening yet
        assert _roundtrip(fwd.port, b"second") == b"SECOND"
    assert len(fwd.errors) == 1 and transport.opened[0] == ("direct-tcpip", ("127.0.0.1", 8888))


def test_large_transfers_and_half_close():
    payload = bytes(range(256)) * 8192  # 2 MiB
    with forward_local(FakeTransport(), "127.0.0.1", 8888) as fwd:
        assert _roundtrip(fwd.port, payload) == payload.upper()


def test_ipv6_loopback_is_served_on_the_same_port():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    with forward_local(FakeTransport(), "127.0.0.1", 8888) as fwd:
        try:
            assert _roundtrip(fwd.port, b"six", socket.AF_INET6, "::1") == b"SIX"
        except OSError as exc:
            pytest.skip(f"::1 unavailable here: {exc}")


def test_listens_on_loopback_only_and_closes_on_exit():
    with forward_local(FakeTransport(), "127.0.0.1", 8888) as fwd:
        port = fwd.port
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


class HeartbeatTransport:
    """Answers keepalive requests while ``answering``; otherwise never (a dead hop)."""

    def __init__(self, answering: bool):
        self.answering, self.active = answering, True

    def is_active(self) -> bool:
        return self.active

    def global_request(self, kind, wait=True):
        while not self.answering and self.active:
            time.sleep(0.01)
        return None  # sshd refuses keepalive@openssh.com: a refusal is still an answer

    def close(self) -> None:
        self.active = False


def test_a_dead_hop_is_noticed_after_three_unanswered_keepalives():
    from fabfile_lib.forwards.paramiko_forward import Heartbeat

    with Heartbeat(HeartbeatTransport(answering=True), interval=0.05) as beat:
        time.sleep(0.3)  # twice the deadline: answers keep it alive
        assert beat.alive()
    dead = HeartbeatTransport(answering=False)
    with Heartbeat(dead, interval=0.05) as beat:
        assert beat.alive()
        time.sleep(0.3)  # 3 intervals and the slack (one more, at most 1 s)
        assert not beat.alive() and not dead.active  # and the transport is closed, so waiters fail now


def test_a_forward_on_the_master_is_alive_while_that_very_master_process_runs_and_asks_no_ssh_to_know():
    import subprocess
    import sys

    from fabfile_lib.forwards import openssh_forward
    from fabfile_lib.master import MasterInfo

    carrier = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    checks: list[int] = []

    class _Master:  # what the forward asks of the master: one -O check, when it is added
        def check(self):
            checks.append(1)
            return MasterInfo(True, carrier.pid)

    alive = openssh_forward._carrier_alive(_Master())
    assert alive() and alive() and len(checks) == 1  # by pid and start time, each look after the first
    carrier.kill()
    carrier.wait()
    assert not alive() and len(checks) == 1

    class _Nameless(_Master):  # an ssh whose -O check names no pid: asked each time
        def check(self):
            checks.append(1)
            return MasterInfo(True, 0)

    nameless = openssh_forward._carrier_alive(_Nameless())
    assert nameless() and len(checks) == 3
