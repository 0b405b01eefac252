"""Keyboard-interactive answers (a second factor) for the Paramiko hops: on the terminal, at most once per
hop, and never where nobody can be asked."""

from __future__ import annotations

import getpass
import sys

from . import commands, openssh
from .errors import AuthenticationError, PromptNeeded


class Prompter:
    """Answers keyboard-interactive prompts (a second factor) on the terminal, at most once per hop.

    A run that cannot ask -- no terminal, or a background forward -- refuses with :class:`PromptNeeded`
    instead of hanging on input nobody will give.
    """

    def __init__(self, interactive: bool):
        self.interactive = interactive
        self.asked: set[str] = set()

    def handler(self, label: str):
        def answer(title: str, instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
            if not prompts:
                return []
            if not self.interactive or not openssh.tty_available():
                raise PromptNeeded(
                    f"logging in to {label} needs keyboard-interactive answers (a second factor) and nobody can "
                    f"be asked here: use the foreground `{commands.run('tunnel')}`, or lab.transport: openssh (a "
                    "ControlMaster) where OpenSSH is installed.")
            if label in self.asked:
                raise AuthenticationError(f"{label} asked for a second factor again: the code was refused.")
            self.asked.add(label)
            for text in (title, instructions):
                if text.strip():
                    print(text.strip(), file=sys.stderr)
            return [getpass.getpass(text) if not echo else _read_tty(text) for text, echo in prompts]

        return answer


def _read_tty(prompt: str) -> str:
    with open("/dev/tty", "r+") as tty:
        tty.write(prompt)
        tty.flush()
        return tty.readline().rstrip("\n")
