"""Commands on the login node over the cluster's OpenSSH master, without Fabric.

What ``status``, ``list`` and the scheduler's questions need is a command and its output; for those a
plain ``ssh -S CTL DEST COMMAND`` is the whole work, and importing Fabric and Paramiko for it would cost
more than the command itself. Its ``run`` takes the arguments ``remote.run_command`` passes a Fabric
Connection and returns what it reads of Invoke's ``Result``, so the two are used alike.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from .master import Master


@dataclass(frozen=True)
class Result:
    """What a command said: Invoke's ``Result``, as far as the tool reads it."""

    command: str
    stdout: str
    stderr: str
    exited: int

    @property
    def ok(self) -> bool:
        return self.exited == 0


class MasterShell:
    """Shell commands on the far side of ``master`` (``host`` names it in messages)."""

    rides_master = True  # an exit status of 255 is ssh's own failure (remote.run_command)

    def __init__(self, master: Master, host: str):
        self.master, self.host = master, host

    def run(self, command: str, *, hide: bool = True, warn: bool = True, in_stream: object = False,
            timeout: float | None = None, data: bytes | None = None) -> Result:
        """``command`` on the login node; a non-zero exit is returned, not raised (``warn``). ``data``: the
        command's standard input (else none)."""
        stdin = {"input": data} if data is not None else {"stdin": subprocess.DEVNULL}
        proc = subprocess.run(self.master.address.command(command), capture_output=True, timeout=timeout,
                              check=False, **stdin)
        return Result(command, text_of(proc.stdout), text_of(proc.stderr), proc.returncode)


def text_of(data: bytes) -> str:
    """What a command printed, as text mode reads it (universal newlines); an undecodable byte replaced."""
    return data.decode(errors="replace").replace("\r\n", "\n").replace("\r", "\n")
