"""The command a message tells the user to run for a task: ``inv lab.tunnel`` in a clone of the
repository, ``fabfile-lab tunnel`` where the tool is installed as a command.

The ``fabfile-lab`` program says which it is once, at start (:func:`use`); the background forward it
starts inherits that through the environment.
"""

from __future__ import annotations

import os

PROGRAM = "fabfile-lab"
_ENV = "FLAB_COMMAND_STYLE"  # not FABFILE_LAB_*: those are config values for the program


def use(program: str) -> None:
    """Say the tasks are run as ``program`` (``fabfile-lab``) from here on, here and in child processes."""
    os.environ[_ENV] = program


def where_config() -> str:
    """Where the user sets a config value, in the words of a message."""
    if os.environ.get(_ENV) == PROGRAM:
        return f"in your config file (`{PROGRAM} config init` writes it) or with `{PROGRAM} -f FILE`"
    return "in invoke.yaml or with `inv -f FILE`"


def run(task: str) -> str:
    """How the user runs ``task`` (a lab task's name: ``tunnel``, ``cancel``...)."""
    return f"{PROGRAM} {task}" if os.environ.get(_ENV) == PROGRAM else f"inv lab.{task}"
