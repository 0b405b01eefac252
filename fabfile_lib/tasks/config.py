"""``fabfile-lab config init``: ask for the cluster, write the user's config file, check it with doctor."""

from __future__ import annotations

import sys
from dataclasses import asdict, fields
from pathlib import Path

import yaml
from invoke import task

from .. import commands, config_trust, user_config
from ..errors import ConfigError
from ..settings import LabSettings
from ._errors import lab_config, user_errors
from .lab import print_checks

ACTIONS = ("init", "path", "show", "allow")


@task(positional=["action"],
      help={"action": "init: ask and write your config file, then check it; path: print where it is; show: the "
                      "settings in effect here and the files they came from; allow [FILE]: take every key of a "
                      "project's fabfile-lab.yaml as it is now",
            "file": "allow: the project file (default: the one found from here upwards)"})
@user_errors
def config(c, action, file=""):
    """Your config file ($XDG_CONFIG_HOME/fabfile-lab/config.yaml): `config init` asks for the login host
    (offering your ssh config's hosts), the jump host, partition, time limit and environment, writes the
    file (0600) and runs doctor; `config path` prints where it is; `config show`, the settings in effect
    and the files they were read from; `config allow [FILE]` trusts a project's fabfile-lab.yaml as it is
    now (until it changes) for the keys a project file may not set by itself."""
    if action not in ACTIONS:
        raise ConfigError(f"config {action!r} is unknown: use `config init`, `config path`, `config show` or "
                          "`config allow [FILE]`.")
    where = user_config.path()
    if action == "path":
        print(where)
        return
    if action == "show":
        _show(c)
        return
    if action == "allow":
        _allow(file)
        return
    if not sys.stdin.isatty():
        raise ConfigError("config init asks questions: run it in a terminal, or write "
                          f"{where} yourself (docs/configuration.md).")
    if where.exists() and not _ask(f"{where} exists; replace it? [y/N]", "n").lower().startswith("y"):
        print("nothing written")
        return
    answers = _questions()
    path = user_config.write(user_config.lab_section(answers), where)
    print(f"wrote {path} (0600); checking it:")
    print_checks(LabSettings.from_config(user_config.lab_section(answers)))


def _allow(file: str) -> None:
    if not file:
        found = user_config.project_dir(Path.cwd())
        if found is None:
            raise ConfigError(f"no {user_config.PROJECT_FILE} here or in a directory above: give the file, "
                              "`config allow FILE`.")
        file = str(found / user_config.PROJECT_FILE)
    path = config_trust.allow(Path(file))
    print(f"allowed {path} as it is now: all its keys are taken until it changes (recorded in "
          f"{config_trust.allowed_path()})")


def _show(c) -> None:
    paths = [getattr(c.config, f"_{level}_path", None) for level in ("system", "user", "project", "runtime")]
    read = [str(p) for p in paths if p and Path(p).is_file()]  # (Invoke says found of a .py that is not there)
    print(f"# read from: {', '.join(read) or 'no config file'} (then FABFILE_LAB_* variables)")
    for found in config_trust.reads():
        if found.skipped:
            print(f"# skipped {found.path}: {found.skipped}")
        elif found.level == "project" and found.allowed:
            print(f"# project file {found.path}: allowed, every key taken")
        elif found.level == "project":
            print(f"# project file {found.path}: not allowed; took {', '.join(found.taken) or 'nothing'}; refused "
                  f"{', '.join(found.refused) or 'nothing'} (`{commands.PROGRAM} config allow` takes them all)")
    print(yaml.safe_dump({"lab": asdict(LabSettings.from_config(lab_config(c)))}, sort_keys=False), end="")


def _questions() -> user_config.Answers:
    defaults = {f.name: f.default for f in fields(user_config.Answers)}
    ssh_config = _ask("ssh config file", defaults["ssh_config"])
    hosts = user_config.ssh_hosts(Path(ssh_config))
    offered = f" (from it: {', '.join(hosts[:12])})" if hosts else ""
    login = _ask(f"login host: an ssh config alias{offered} or [user@]host[:port]", hosts[0] if len(hosts) == 1 else "")
    return user_config.Answers(
        ssh_config=ssh_config, login=login,
        jump=_ask("jump host (empty: the login alias's own ProxyJump, if any)", ""),
        partition=_ask("partition (empty: the site's default)", ""),
        time=_ask("time limit", defaults["time"]),
        environment=_ask("Jupyter's environment: conda:NAME, venv:PATH, module:NAME... (empty: none)", ""))


def _ask(question: str, default: str) -> str:
    shown = f" [{default}]" if default else ""
    try:
        answer = input(f"{question}{shown}: ").strip()
    except EOFError:
        raise ConfigError("config init was not answered (end of input): nothing written.") from None
    return answer or default
