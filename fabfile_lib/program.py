"""The ``fabfile-lab`` command: the lab tasks as a program of their own, installed like any tool.

Built on Invoke's ``Program``, the way Fabric's ``fab`` is: the same tasks, options, exit codes and JSON
as ``inv lab.*`` in the repository, named without the ``lab.`` prefix (``fabfile-lab start``), because
the command is the lab tool and nothing else. Its config is read, each over the one before, from:

1. the defaults; ``/etc/fabfile-lab.yaml``;
2. the user's file, ``$XDG_CONFIG_HOME/fabfile-lab/config.yaml`` (``fabfile-lab config init`` writes it);
3. a project's ``fabfile-lab.yaml``, the nearest from the current directory upwards;
4. a file given with ``-f FILE``;
5. ``FABFILE_LAB_*`` environment variables (``FABFILE_LAB_VIA=login``: Invoke's env-prefix convention
   with the prefix ``FABFILE``, so the names read as the keys they set);
6. the task's own options.

Invoke itself puts ``-f`` above the environment; here a variable set for one run wins over a file that a
team shares, as a flag does.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from invoke import Collection, Config, Program
from invoke.config import merge_dicts, obliterate

from . import commands, config_trust, user_config, version
from .tasks import lab as lab_tasks
from .tasks._errors import install_guard
from .tasks.config import config as config_task


class LabConfig(Config):
    prefix = "fabfile-lab"
    env_prefix = "FABFILE"

    def load_system(self, merge: bool = True) -> None:
        """``/etc/fabfile-lab.yaml`` if root's alone (Invoke would also import ``/etc/fabfile-lab.py``)."""
        self._load_checked("system", config_trust.SYSTEM_FILE, merge)

    def load_user(self, merge: bool = True) -> None:
        """One user file, in the XDG place (Invoke would look for ``~/.fabfile-lab.yaml``)."""
        self._load_checked("user", user_config.path(), merge)

    def load_project(self, merge: bool = True) -> None:
        """The nearest ``fabfile-lab.yaml`` from the current directory upwards, for the keys a project may
        set unless the user allowed it (``config_trust.py``)."""
        where = user_config.project_dir(Path.cwd())
        if where is not None:
            self._load_checked("project", where / user_config.PROJECT_FILE, merge)

    def load_runtime(self, merge: bool = True) -> None:
        """The ``-f`` file, as given (no ownership check: you named it), with the same one-line errors."""
        if self._runtime_path is not None:
            self._load_checked("runtime", Path(self._runtime_path), merge)

    def _load_checked(self, level: str, path: Path, merge: bool) -> None:
        if getattr(self, f"_{level}_found") is not None:
            return
        found = config_trust.read(path, level)
        read = found.data is not None
        self._set(**{f"_{level}": found.data or {}, f"_{level}_found": read,
                     # a -f file that is not there is an error later (tasks/_errors.lab_config): keep its path
                     f"_{level}_path": str(path) if read or level == "runtime" else None})
        if merge:
            self.merge()

    def merge(self) -> None:
        """Invoke's order, except that the environment comes after the ``-f`` file (see the module)."""
        self._set(_config={})
        merge_dicts(self._config, self._defaults)
        merge_dicts(self._config, self._collection)
        self._merge_file("system", "System-wide")
        self._merge_file("user", "Per-user")
        self._merge_file("project", "Per-project")
        self._merge_file("runtime", "Runtime")
        merge_dicts(self._config, self._env)
        merge_dicts(self._config, self._overrides)
        merge_dicts(self._config, self._modifications)
        obliterate(self._config, self._deletions)


# The core options that mean something here, with what they mean here; Invoke's others (--hide, --pty,
# --dry, --echo, --warn-only...) are about run() and are still parsed, but not offered.
_CORE_HELP = {
    "--config": "a config file for this run, over yours and a project's (FABFILE_LAB_* variables and the "
                "command's options still win)",
    "--help": "this help; `--help COMMAND`: that command's options",
    "--list": "the commands, one line each",
    "--version": "the version",
    "--debug": "Invoke's and the tool's debug log on stderr",
    "--print-completion-script": "the shell completion script (bash, zsh or fish): "
                                 "source <(fabfile-lab --print-completion-script bash)",
}


class LabProgram(Program):
    @property
    def version(self) -> str:
        """Looked up for ``--version`` only: the lookup reads the installed packages' metadata."""
        return version()

    @version.setter
    def version(self, _given: str) -> None:
        pass

    def print_help(self) -> None:
        """The commands first, then only the options that act (Invoke lists its own first, all of them)."""
        print(f"Usage: {self.binary} COMMAND [--options]   ({self.binary} --help COMMAND: a command's options)")
        print("")
        print("Commands:")
        print("")
        self.print_columns(self._make_pairs(self.scoped_collection))
        print("Options:")
        print("")
        kept = []
        for flags, _ in self.initial_context.help_tuples():
            long = next((re.match(r"--[a-z-]+", w).group() for w in flags.split() if w.startswith("--")), "")
            if long in _CORE_HELP:
                kept.append((flags, _CORE_HELP[long]))
        self.print_columns(kept)


    def parse_collection(self) -> None:
        """The bundled tasks, and a project's ``fabfile-lab.yaml`` from the current directory upwards; one
        line about each config file that was skipped or only partly taken."""
        super().parse_collection()
        self.config.load_project(merge=False)
        for read in config_trust.reads():
            line = read.line(f"{commands.PROGRAM} config allow {read.path}")
            if line:
                print(line, file=sys.stderr)


def namespace() -> Collection:
    """The lab tasks at the top (``start``, ``status``...), and ``config``."""
    root = Collection()
    for name, task in lab_tasks.ns.tasks.items():
        root.add_task(task, name=name)
    root.add_task(config_task, name="config")
    root.configure(lab_tasks.ns.configuration())
    return root


program = LabProgram(namespace=namespace(), name="fabfile-lab", binary="fabfile-lab",
                     binary_names=["fabfile-lab"], config_class=LabConfig)


def _allow_file_word(argv: list[str]) -> list[str]:
    """``config allow FILE`` as ``config allow --file FILE``: Invoke has no optional positional arguments."""
    for i in range(len(argv) - 2):
        if argv[i:i + 2] == ["config", "allow"] and not argv[i + 2].startswith("-"):
            return [*argv[:i + 2], "--file", *argv[i + 2:]]
    return argv


def _target_word(argv: list[str]) -> list[str]:
    """``forward [OPTIONS] TARGET`` as ``forward [OPTIONS] --target TARGET`` (``forward --list`` has none)."""
    if "forward" not in argv[1:]:
        return argv
    at = argv.index("forward", 1)
    valued = {f"-{n}" if len(n) == 1 else f"--{n}" for arg in lab_tasks.forward.get_arguments()
              if arg.kind is not bool for n in arg.names}
    i = at + 1
    while i < len(argv):
        word = argv[i]
        if word in valued:
            i += 2
            continue
        if not word.startswith("-"):
            return [*argv[:i], "--target", *argv[i:]]
        i += 1
    return argv


def main() -> None:
    commands.use(commands.PROGRAM)  # hints in messages name `fabfile-lab start`, not `inv lab.start`
    install_guard()
    program.run(_target_word(_allow_file_word(sys.argv)))


if __name__ == "__main__":
    main()
