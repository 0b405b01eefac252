"""The researcher's own config file for the ``fabfile-lab`` command, and what ``config init`` writes there.

The file is ``$XDG_CONFIG_HOME/fabfile-lab/config.yaml`` (``~/.config/fabfile-lab/config.yaml``), in the
same shape as a file given with ``inv -f``: a ``lab:`` mapping. It names the user's cluster, so it is
written 0600 in a 0700 directory. The questions and the printing live in the task; here are the answers'
meaning: which hosts the user's ssh config offers, and the file they make.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import paths
from .errors import ConfigError
from .settings import LabSettings

FILE_NAME = paths.USER_CONFIG_FILE
PROJECT_FILE = "fabfile-lab.yaml"  # a project's own settings, found from the current directory upwards
_ENV_KINDS = ("conda", "mamba", "venv", "uv", "pixi")


def directory() -> Path:
    """``$XDG_CONFIG_HOME/fabfile-lab`` (``~/.config/fabfile-lab``)."""
    return paths.config_dir()


def path() -> Path:
    return directory() / FILE_NAME


def project_dir(start: Path) -> Path | None:
    """The nearest directory from ``start`` upwards that holds a ``fabfile-lab.yaml``, or None."""
    for where in (start, *start.parents):
        if (where / PROJECT_FILE).is_file():
            return where
    return None


def ssh_hosts(config: Path) -> list[str]:
    """The concrete ``Host`` aliases of an ssh config and the files it includes (no patterns, no
    negations), in order: what the user is offered as the login host."""
    found: list[str] = []
    for line in _config_lines(config, depth=0):
        words = line.split(None, 1)
        if len(words) == 2 and words[0].lower() == "host":
            found += [h for h in words[1].split() if not any(c in h for c in "*?!")]
    return list(dict.fromkeys(found))


def _config_lines(config: Path, depth: int) -> list[str]:
    try:
        text = config.expanduser().read_text(errors="replace")
    except OSError:
        return []
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        key, _, rest = line.partition(" ")
        if key.lower() == "include" and depth < 4:  # as ssh does: relative to ~/.ssh, globs allowed
            for pattern in rest.split():
                full = os.path.join(os.path.expanduser("~/.ssh"), os.path.expanduser(pattern))
                for included in sorted(glob.glob(full)):
                    lines += _config_lines(Path(included), depth + 1)
        elif line:
            lines.append(line)
    return lines


@dataclass(frozen=True)
class Answers:
    """What ``config init`` asked."""

    ssh_config: str = "~/.ssh/config"
    login: str = ""
    jump: str = ""
    partition: str = ""
    time: str = "01:00:00"
    environment: str = ""  # "conda:lab", "venv:~/envs/lab module:python/3.11", ...


def environment(text: str) -> dict:
    """``lab.env`` from ``kind:value`` words: ``conda:NAME``, ``venv:PATH``, ``module:NAME`` (repeatable,
    or comma-separated)..."""
    env: dict = {}
    for word in text.split():
        kind, sep, value = word.partition(":")
        kind = kind.lower()
        if not sep or not value:
            raise ConfigError(f"environment {word!r} is not KIND:VALUE (e.g. conda:lab, venv:~/envs/lab, "
                              "module:anaconda3).")
        if kind in ("module", "modules"):
            env.setdefault("modules", []).extend(v for v in value.split(",") if v)
        elif kind in _ENV_KINDS:
            env[kind] = value
        else:
            raise ConfigError(f"environment kind {kind!r} is unknown: use one of {', '.join(_ENV_KINDS)} or module.")
    return env


def lab_section(answers: Answers) -> dict:
    """The ``lab:`` mapping the answers make; a ConfigError (one line) if the settings would not load."""
    if not re.fullmatch(r"[^\s'\"]+", answers.login or ""):
        raise ConfigError("a login host is needed: an alias of your ssh config, or [user@]host[:port].")
    sbatch = {k: v for k, v in (("partition", answers.partition), ("time", answers.time)) if v}
    lab = {"ssh_config": answers.ssh_config or "~/.ssh/config", "login": answers.login, "jump": answers.jump,
           "sbatch": sbatch, "env": environment(answers.environment)}
    LabSettings.from_config(lab)  # every value checked as a task would check it
    return lab


def write(lab: dict, where: Path | None = None) -> Path:
    """Write the config file (0600, in a 0700 directory; the old one replaced atomically) and return its
    path."""
    where = where or path()
    where.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = where.with_name(f".{where.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("# Written by `fabfile-lab config init`; every key is in docs/configuration.md.\n")
        yaml.safe_dump({"lab": lab}, fh, sort_keys=False, default_flow_style=False)
    os.replace(tmp, where)
    return where
