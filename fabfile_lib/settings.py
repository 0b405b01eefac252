"""The ``lab`` configuration: where the cluster is, how to launch Jupyter there, and how to reach it.

Read from Invoke's config (``invoke.yaml``, ``inv -f FILE``, environment), validated once here so that
every later step can trust it and a bad value is reported before anything is submitted.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path

from . import apps, commands, environment, modes, paths
from .errors import ConfigError

TRANSPORTS = ("auto", "openssh", "paramiko")
_PERSIST = re.compile(r"^(0|yes|no|(\d+[smhdwSMHDW]?)+)$")
_OPTION = re.compile(r"^[a-z][a-z0-9-]*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
# Options the tool sets itself: the job's log must land in the private lab directory.
_RESERVED = ("output", "error", "chdir", "parsable", "wrap", "export", "export-file")


def reserved_option(key: str) -> str:
    """The option the tool sets itself that ``key`` names: sbatch (getopt_long) takes any unambiguous
    abbreviation, in ``#SBATCH`` lines as on its command line (tried here: ``--outp``, ``--chd``, ``--err``
    were taken), so a prefix counts too; "" for any other key."""
    return next((name for name in _RESERVED if name.startswith(key)), "") if key else ""

# Options of lab.start / lab.submit that set one sbatch option for one run.
RESOURCE_OPTIONS = {"partition": "partition", "time": "time", "cpus": "cpus-per-task", "mem": "mem", "gpus": "gpus",
                    "account": "account", "constraint": "constraint", "qos": "qos"}


_LOCAL_PATHS = ("ssh_config", "state_dir")  # paths on the laptop

def _setting(kind: str, default: object = MISSING, *, factory: object = MISSING, help: str):
    """One setting of :class:`LabSettings`: what a value must be (``kind``, for one-line errors), its
    default, and its help (the line of the configuration reference)."""
    return field(default=default, default_factory=factory, metadata={"kind": kind, "help": help})


PROFILES_HELP = "named sets of lab settings for `--profile`"  # lab.profiles is read before the settings are made
_EXAMPLES = {"text": "a string", "integer": "a whole number, e.g. 8888", "number": "a number of seconds, e.g. 300",
             "boolean": "true or false", "mapping": "a mapping of sbatch long options, e.g. {partition: gpu, "
             "time: '04:00:00'}", "list": "a list of shell lines, e.g. ['module load jupyter']",
             "duration": "a duration, e.g. 8h, 30m, 3600, or 0 for off", "names": "a list of names, e.g. [tensorboard]",
             "apps": "a mapping of app names to their declarations"}


def config_defaults(cls: type) -> dict:
    """A settings dataclass's defaults as an Invoke config mapping (tuples as lists, as YAML has them)."""
    values = {}
    for f in fields(cls):
        value = f.default_factory() if f.default_factory is not MISSING else f.default
        values[f.name] = list(value) if isinstance(value, tuple) else value
    return values


def _check_keys(given: Mapping, prefix: str, exclude: tuple[str, ...] = ()) -> None:
    for key in given:
        if key not in _KINDS or key in exclude:
            close = difflib.get_close_matches(str(key), [k for k in _KINDS if k not in exclude], n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise ConfigError(f"{prefix}{key} is not a setting{hint}: the settings are listed in invoke.yaml.")


def sbatch_options(resources: Mapping[str, object], extra: list[str] | tuple[str, ...] = ()) -> dict:
    """sbatch options for one run: ``resources`` by option name (``--cpus`` and the like, see
    RESOURCE_OPTIONS; None = not given) and ``extra`` ``KEY=VALUE`` words (``--sbatch``; a bare KEY is a
    flag)."""
    options = {RESOURCE_OPTIONS[k]: str(v) for k, v in resources.items() if v not in (None, "")}
    for word in extra:
        key, sep, value = str(word).partition("=")
        key = key.strip().removeprefix("--")
        if not _OPTION.fullmatch(key):
            raise ConfigError(f"--sbatch {word!r} is not KEY=VALUE with an sbatch long option as KEY "
                              "(e.g. --sbatch comment='two words').")
        options[key] = value if sep else True
    return options


def _wrong(key: str, value: object) -> ConfigError:
    kind = _KINDS[key]
    return ConfigError(f"lab.{key} must be {_EXAMPLES[kind]}, not {type(value).__name__} {value!r}"[:300] + ".")


def _coerce(key: str, value: object) -> object:
    """``value`` as the type ``key`` wants, or a ConfigError naming the key and that type. Strings of
    numbers and booleans are taken: environment variables (INVOKE_LAB_...) arrive as strings."""
    kind = _KINDS[key]
    if kind == "text":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _wrong(key, value)
        return str(value)
    if kind in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _wrong(key, value)
        try:
            number = float(value)
        except ValueError:
            raise _wrong(key, value) from None
        if kind == "integer":
            if number != int(number):
                raise _wrong(key, value)
            return int(number)
        return number
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise _wrong(key, value)
    if kind == "mapping":
        if not hasattr(value, "items") or isinstance(value, str):
            raise _wrong(key, value)
        options = {str(k): v for k, v in value.items()}
        for option, item in options.items():
            if not (item is None or isinstance(item, str | int | float | bool)):
                raise ConfigError(f"lab.sbatch option {option!r} must be a single value, not "
                                  f"{type(item).__name__} {item!r}.")
        return options
    if kind == "env":
        return environment.check(value)
    if kind == "apps":
        apps.declared(value)  # each declaration checked now; kept as given (a record stores it so)
        return {str(k): dict(v) for k, v in value.items()}
    if kind == "names":
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise _wrong(key, value)
        return tuple(str(v) for v in value)
    if kind == "profiles":
        if not isinstance(value, Mapping):
            raise ConfigError(f"lab.profiles must be a mapping of profile names to lab settings, e.g. "
                              f"{{gpu: {{sbatch: {{partition: gpu}}}}}}, not {type(value).__name__} {value!r}."[:300])
        for name, profile in value.items():
            if not isinstance(profile, Mapping):
                raise ConfigError(f"lab.profiles.{name} must be a mapping of lab settings, not {profile!r}.")
            _check_keys(profile, f"lab.profiles.{name}.", exclude=("profiles",))
        return {str(k): dict(v) for k, v in value.items()}
    if kind == "list":
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise _wrong(key, value)
        for line in value:
            if isinstance(line, bool) or not isinstance(line, str | int | float):
                raise ConfigError(f"lab.{key} must hold shell lines (strings), not {type(line).__name__} {line!r}.")
        return tuple(str(line) for line in value)
    # duration: "0" whenever nothing is to be kept (0, false, no), so later code tests one spelling
    if value is False or value == 0:
        return "0"
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _wrong(key, value)
    text = str(value).strip()
    return "0" if text.lower() in ("0", "no", "false") else text


@dataclass(frozen=True)
class LabSettings:
    """The ``lab`` settings, each declared here once -- its type, default and help, as jupyter_server declares
    its traits; its check is in :meth:`validate` --: invoke.yaml, ``ns.configure`` and the table of
    docs/configuration.md are checked against these by the tests. The longer story of each key: invoke.yaml."""

    login: str = _setting("text", "", help="the login node: ssh alias or `[user@]host[:port]` (required)")
    ssh_config: str = _setting("text", "~/.ssh/config",
                               help="ssh config the aliases come from (`\"\"`: ssh's defaults)")
    jump: str = _setting("text", "", help="the jump host; empty: the login alias's own ProxyJump/ProxyCommand")
    via: str = _setting("text", modes.Via.COMPUTE.value,
                        help="how the laptop reaches Jupyter: `compute`, `login`, `reverse`, or `auto` (tried in that"
                             " order, remembered per cluster)")
    sbatch: Mapping[str, object] = _setting("mapping", factory=lambda: {"time": "01:00:00"},
                                            help="sbatch long options (a mapping); yours add to this default")
    setup: tuple[str, ...] = _setting("list", (), help="shell lines run in the job after `lab.env`")
    env: Mapping[str, object] = _setting("env", factory=dict,
                                         help="the environment: `conda`/`mamba`/`venv`/`uv`/`pixi`, `modules`, `init`")
    app: str = _setting("text", apps.DEFAULT, help="the web app to run: `jupyterlab`, `notebook`, `marimo`, "
                        "`code-server`, or one of `lab.apps` (`apps` lists them)")
    apps: Mapping[str, object] = _setting("apps", factory=dict, help="more apps, declared as the built-in ones are "
                                          "(docs/apps.md)")
    open_apps: tuple[str, ...] = _setting("names", (), help="apps allowed to run without a secret, open to every "
                                          "user of their node (e.g. `[tensorboard]`)")
    command: str = _setting("text", "", help="the app's command, if not its own (e.g. a path to `jupyter lab`)")
    notebook_dir: str = _setting("text", "", help="the app's working directory on the cluster (empty: `$HOME`)")
    local_port: int = _setting("integer", 0, help="the URL's local port (0: any free one)")
    name: str = _setting("text", "default", help="the lab name when `--name` is not given")
    wait_timeout: float = _setting("number", 300, help="seconds `lab.start`/`lab.wait` wait for Jupyter")
    accept_new_host_keys: bool = _setting("boolean", False,
                                          help="record unknown host keys on first use (a changed key is always "
                                               "refused)")
    reverse_target: str = _setting("text", "",
                                   help="reverse mode: where the job's `ssh -R` goes (empty: `$SLURM_SUBMIT_HOST`)")
    remote_dir: str = _setting("text", "~/.fabfile-lab",
                               help="where the per-lab private directories are made on the cluster")
    state_dir: str = _setting("text", "",
                              help="local records (empty: `$XDG_STATE_HOME/fabfile-lab` or "
                                   "`~/.local/state/fabfile-lab`)")
    keepalive: int = _setting("integer", 15, help="seconds between keepalives; a hop is dead after 3 unanswered")
    connect_timeout: float = _setting("number", 15, help="seconds for each hop's connect, banner and authentication")
    transport: str = _setting("text", "auto", help="`auto`, `openssh` or `paramiko`")
    persist: str = _setting("duration", "8h", help="how long the kept login lives after its last use (`0`: none kept)")
    idle: str = _setting("duration", "0", help="end the lab once its app has not been used for this long, e.g. 2h "
                         "(`0`: never); a running cell, an open browser tab or a request is use")

    @classmethod
    def from_config(cls, data: Mapping, *, profile: str | None = None, sbatch: Mapping | None = None,
                    **overrides) -> LabSettings:
        """Settings from a ``lab`` config mapping; then, each over the one before: the named ``profile``
        (from ``lab.profiles``), ``overrides`` (keyword per key; None = not given) and ``sbatch`` options
        for this run. sbatch options add up along the way; every other key is replaced."""
        given = {str(k): v for k, v in dict(data).items() if v is not None}
        _check_keys(given, "lab.")
        profiles = _coerce("profiles", given.pop("profiles", {}))
        layers = [given]
        if profile:
            if profile not in profiles:
                known = ", ".join(sorted(profiles)) or "none are defined"
                raise ConfigError(f"lab profile {profile!r} is not defined (lab.profiles: {known}); "
                                  f"`{commands.run('profiles')}` lists them.")
            layers.append({str(k): v for k, v in profiles[profile].items() if v is not None})
        layers.append({k: v for k, v in overrides.items() if v is not None})
        merged = {k: v for k, v in DEFAULTS.items() if k != "profiles"}
        options = dict(DEFAULTS["sbatch"])
        for layer in layers:
            merged.update(layer)
            # sbatch options add to the defaults (a site's partition keeps the default time limit).
            options.update(_coerce("sbatch", layer.get("sbatch", {})))
        options.update(_coerce("sbatch", sbatch or {}))
        kwargs = {key: _coerce(key, merged[key]) for key in _KINDS if key != "profiles"}
        for key in _LOCAL_PATHS:  # a relative path means the directory the user typed the command in, for
            # good: the background forward runs elsewhere (python_child.py)
            if kwargs[key] and not kwargs[key].startswith("~") and not os.path.isabs(kwargs[key]):
                kwargs[key] = os.path.abspath(kwargs[key])
        kwargs["sbatch"] = options
        settings = cls(**kwargs)
        settings.validate()
        return settings

    def validate(self) -> None:
        _validate(self)

    @property
    def app_spec(self) -> apps.App:
        """The app this lab runs, with ``lab.command`` (if set) as its command."""
        app = apps.lookup(self.app, apps.declared(self.apps))
        return replace(app, command=self.command) if self.command else app

    @property
    def idle_seconds(self) -> int:
        """``lab.idle`` in seconds; 0 for never."""
        return duration_seconds(self.idle)

    @property
    def state_path(self) -> Path:
        return state_path(self.state_dir)

    @property
    def _ssh_config_set(self) -> bool:
        """The default ~/.ssh/config may be absent; a path the user chose must exist."""
        return self.ssh_config != DEFAULTS["ssh_config"]

    @property
    def ssh_config_path(self) -> Path | None:
        path = Path(self.ssh_config).expanduser() if self.ssh_config else None
        return path if path and path.exists() else None



_DURATION = re.compile(r"(?:([0-9]+)([smhd]?))+")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> int:
    """``2h``, ``90m``, ``1h30m``, ``3600`` (seconds) or ``0``/empty (never) as seconds; a ConfigError else."""
    word = str(text).strip().lower()
    if word in ("", "0", "no", "off"):
        return 0
    if not _DURATION.fullmatch(word):
        raise ConfigError(f"{text!r} is not a duration: use e.g. 2h, 30m, 1h30m, 3600, or 0 for never.")
    return sum(int(n) * _UNIT[u] for n, u in re.findall(r"([0-9]+)([smhd]?)", word))


def _check_idle(self: LabSettings) -> None:
    try:
        seconds = self.idle_seconds
    except ConfigError as exc:
        raise ConfigError(f"lab.idle {exc}") from None
    if seconds and seconds < 60:
        raise ConfigError(f"lab.idle {self.idle!r} is under a minute: a lab would end between two cells.")
    if seconds and not self.app_spec.idle:
        raise ConfigError(f"lab.idle is set, but {self.app_spec.title} has no way to tell when it is unused: set "
                          "lab.idle: 0 for it, or declare its own idle setting (idle_args, docs/apps.md).")


def _validate(self: LabSettings) -> None:
    if not self.login:
        raise ConfigError("lab.login is not set: give the login host (ssh alias or [user@]host[:port]) "
                          f"{commands.where_config()}.")
    if self.via not in modes.CHOICES:
        raise ConfigError(f"lab.via {self.via!r} is unknown: use one of {', '.join(modes.CHOICES)}.")
    check_name(self.name)
    if not 0 <= self.local_port <= 65535:
        raise ConfigError(f"lab.local_port {self.local_port} is out of range (0 = any free port).")
    if self.transport not in TRANSPORTS:
        raise ConfigError(f"lab.transport {self.transport!r} is unknown: use one of {', '.join(TRANSPORTS)}.")
    if not _PERSIST.fullmatch(self.persist):
        raise ConfigError(f"lab.persist {self.persist!r} is not a duration: use e.g. 8h, 30m, 3600, or 0 for off.")
    if self.keepalive < 1:
        raise ConfigError(f"lab.keepalive {self.keepalive} must be at least 1 second.")
    _check_idle(self)
    if self.ssh_config and self._ssh_config_set and not Path(self.ssh_config).expanduser().is_file():
        raise ConfigError(f"lab.ssh_config {self.ssh_config!r} does not exist: fix the path, or set it to "
                          f"\"\" to use ssh's defaults.")
    try:
        shlex.split(self.command)
    except ValueError as exc:
        raise ConfigError(f"lab.command {self.command!r} cannot be split into words ({exc}).") from None
    app = self.app_spec
    if not app.authenticated and app.name not in self.open_apps:
        raise ConfigError(f"the app {app.name} has no secret: anyone on its node could reach it. Add it to "
                          f"lab.open_apps to run it all the same (status then says so).")
    for key in ("remote_dir", "notebook_dir"):
        value = getattr(self, key)
        if any(c in value for c in "%\n\r\x00"):  # sbatch expands % in --output; a newline ends a line
            raise ConfigError(f"lab.{key} {value!r} holds a '%' or a line break: choose a plain path.")
    for key, value in self.sbatch.items():
        if not _OPTION.fullmatch(str(key)):
            raise ConfigError(f"lab.sbatch option {key!r} is not a long option name (e.g. partition).")
        if reserved_option(str(key)):
            raise ConfigError(f"lab.sbatch option {key!r} is set by the tool itself (--{reserved_option(str(key))}"
                              "; sbatch takes any unambiguous abbreviation of an option): remove it.")
        if "\n" in str(value) or "\r" in str(value):
            raise ConfigError(f"lab.sbatch option {key!r} has a line break in its value.")
        if '"' in str(value) and any(c.isspace() for c in str(value)):
            raise ConfigError(f"lab.sbatch option {key!r}: a value with both blanks and double quotes cannot be "
                              "written on an #SBATCH line; drop the quotes.")
    for line in (*self.setup, self.command, self.notebook_dir):
        if "\n" in line or "\r" in line:
            raise ConfigError(f"lab config: {line!r} has a line break; give one setup line per list item.")



# Every lab key and its default: the dataclass's fields, and the profiles (consumed by from_config).
DEFAULTS: dict = {**config_defaults(LabSettings), "profiles": {}}
# What each key must be, for one-line errors that name the key and the type wanted; what each key means.
_KINDS: dict[str, str] = {**{f.name: f.metadata["kind"] for f in fields(LabSettings)}, "profiles": "profiles"}
HELP: dict[str, str] = {**{f.name: f.metadata["help"] for f in fields(LabSettings)}, "profiles": PROFILES_HELP}


def state_path(state_dir: str = "") -> Path:
    """Where lab records live: ``lab.state_dir``, else ``$XDG_STATE_HOME/fabfile-lab``."""
    return paths.state_dir(state_dir)


def check_name(name: str) -> str:
    """A lab name is part of file names here and on the cluster: letters, digits, '.', '_', '-' only."""
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise ConfigError(f"lab name {name!r} is invalid: use up to 40 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit.")
    return name


def local_lab(config: Mapping, name: str | None = None) -> tuple[Path, str]:
    """The state directory and lab name from a ``lab`` config, without requiring the cluster settings:
    a recorded lab carries its own."""
    state_dir = _coerce("state_dir", config.get("state_dir") or "")
    lab_name = _coerce("name", name or config.get("name") or DEFAULTS["name"])
    return state_path(str(state_dir)), check_name(str(lab_name))


def merge_conflict(base: Mapping, updates: Mapping, prefix: str = "") -> tuple[str, object] | None:
    """The first dotted key where ``updates`` gives a mapping for a non-mapping in ``base`` or the reverse --
    what Invoke's merge cannot reconcile -- with the value ``updates`` gives; None if there is none."""
    for key, value in (updates or {}).items():
        if key not in base:
            continue
        dotted = f"{prefix}{key}"
        old = base[key]
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            found = merge_conflict(old, value, f"{dotted}.")
            if found:
                return found
        elif isinstance(value, Mapping) or isinstance(old, Mapping):
            return dotted, value
    return None
