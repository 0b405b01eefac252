"""The web apps a lab can run on the compute node (``lab.app``): one :class:`App` each, as data.

An app says how it starts, how it listens, how it gets its secret, when it is ready, what the browser
opens and how the browser logs in -- and nothing else in the project branches on which app it is. The
batch script renders an app's words for the shell (``batch_script.py``); the probes ask its ready path;
the private redirect page logs in its way (``browser.py``).

- **Listening.** Where OpenSSH carries the laptop's forward and the app can listen on a Unix socket
  (``socket_args``), it gets the private socket Jupyter gets: 0600 in a 0700 directory on the node's own
  disk. Otherwise it listens on a TCP port (``port_args``) of the node's loopback (the node's address in
  login mode), guarded by its secret alone. An app that picks its own port when given 0 and writes
  Jupyter's runtime file says so (``picks_port``); for the others the batch script picks a free port.
- **The secret** is made on the laptop and sent into a 0600 file in the lab's 0700 directory; it is never
  in an argv, a batch script or a log (the app's output goes through a filter that masks it). The app
  reads it from that file (``file-env``: a variable names the file; ``file-arg``: an argument names the
  file) or from a variable the batch shell sets for the app's process alone (``env``).
- **Ready** is a path that answers ``200`` without the secret (``ready_path``), with ``ready_text`` in
  the body, so no secret is sent to whatever holds a port.
- **Login** is how the private redirect page hands the secret to the app: a URL parameter (``url``) or
  a form posted to the app's login path (``form``).

Placeholders in an app's words: ``{socket}``, ``{host}``, ``{port}``, ``{secret_file}``, ``{lab_dir}``.
A site or user declares more apps in the same shape under ``lab.apps`` (see :func:`declared`).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, fields

from .errors import ConfigError

SECRETS = ("file-env", "file-arg", "env", "none")  # how an app gets its secret
LOGINS = ("url", "form", "none")  # how the browser logs in
PLACEHOLDERS = ("socket", "host", "port", "secret_file", "lab_dir")
# How an app is ended when it has not been used for lab.idle: "jupyter", the batch script asks the Jupyter
# server's own API what it knows (no kernel busy, no browser connected, no request, for that long);
# "args", the app's own setting does it (idle_args, {idle} in seconds).
IDLE_KINDS = ("", "jupyter", "args")
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PATH = re.compile(r"/[A-Za-z0-9._~/%-]*")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


@dataclass(frozen=True)
class App:
    """One web app a lab can run (see the module's docstring for what each part means)."""

    name: str
    title: str
    command: str  # the program and its own words: "jupyter lab"
    args: tuple[str, ...] = ()  # always passed after the command
    socket_args: tuple[str, ...] = ()  # where it listens on a Unix socket ({socket}); () if it cannot
    port_args: tuple[str, ...] = ("--host={host}", "--port={port}")  # on a TCP port ({host}, {port})
    picks_port: bool = False  # given port 0 it picks one and writes Jupyter's runtime file (jpserver-PID.json)
    env: tuple[str, ...] = ()  # NAME=VALUE for the app's process (placeholders allowed)
    secret: str = "file-env"  # one of SECRETS
    secret_env: str = ""  # the variable for file-env (it names the file) and env (it holds the secret)
    ready_path: str = "/"  # answers 200 without the secret once the app serves
    ready_text: str = ""  # and its body holds this
    open_path: str = "/"  # what the browser opens
    login: str = "url"  # one of LOGINS
    login_field: str = "token"  # the URL parameter (url) or the form's field (form)
    login_path: str = ""  # the form's action (form)
    kernels: bool = False  # a Jupyter server: VS Code's Jupyter extension can use its kernels (`vscode`)
    idle: str = ""  # how lab.idle ends it when unused: one of IDLE_KINDS ("": it cannot be)
    idle_args: tuple[str, ...] = ()  # for idle "args": the app's own setting, {idle} in seconds
    declared: str = "built in"  # where it was declared, for `apps`

    @property
    def program(self) -> str:
        return shlex.split(self.command)[0]

    @property
    def authenticated(self) -> bool:
        return self.secret != "none"

    @property
    def has_socket(self) -> bool:
        return bool(self.socket_args)

    def url_query(self, secret: str) -> str:
        """The query the browser's first URL carries (the secret, for ``url`` logins)."""
        return f"?{self.login_field}={secret}" if self.login == "url" and secret else ""

    def check(self) -> App:
        """This app if its declaration is whole and safe; a ConfigError naming the first fault."""
        where = f"lab.apps.{self.name}" if self.declared != "built in" else f"the built-in app {self.name}"
        _checks(self, where)
        return self


def _checks(app: App, where: str) -> None:
    def fault(text: str) -> ConfigError:
        return ConfigError(f"{where}: {text}.")

    if not _NAME.fullmatch(app.name):
        raise fault("an app's name is 1-32 lower-case letters, digits, '-' or '_', starting with a letter")
    try:
        words = shlex.split(app.command)
    except ValueError as exc:
        raise fault(f"command {app.command!r} cannot be split into words ({exc})") from None
    if not words:
        raise fault("command is empty: name the program that serves the app")
    if app.secret not in SECRETS:
        raise fault(f"secret {app.secret!r} is unknown: use one of {', '.join(SECRETS)}")
    if app.login not in LOGINS:
        raise fault(f"login {app.login!r} is unknown: use one of {', '.join(LOGINS)}")
    if app.secret in ("file-env", "env") and not _ENV_NAME.fullmatch(app.secret_env):
        raise fault(f"secret {app.secret} needs secret_env, the variable the app reads")
    if app.secret == "none" and app.login != "none":
        raise fault("an app without a secret has no login: set login: none")
    if app.secret != "none" and app.login == "none":
        raise fault("an app with a secret needs a login (url or form) for the browser")
    all_words = (*app.args, *app.socket_args, *app.port_args, *app.env)
    _check_placeholders((*all_words, *app.idle_args), fault)
    if app.secret == "file-arg" and not any("{secret_file}" in w for w in (*app.args, *app.env)):
        raise fault("secret file-arg needs {secret_file} in args (the argument that names the file)")
    if app.socket_args and not any("{socket}" in w for w in app.socket_args):
        raise fault("socket_args must name the socket ({socket}), or be empty for an app that has none")
    if any("{socket}" in w for w in (*app.args, *app.port_args)):
        raise fault("{socket} belongs in socket_args only")
    if not app.picks_port and not any("{port}" in w for w in (*app.port_args, *app.args)):
        raise fault("port_args (or args) must name the port ({port})")
    for entry in app.env:
        if not _ENV_NAME.fullmatch(entry.partition("=")[0]) or "=" not in entry:
            raise fault(f"env entry {entry!r} is not NAME=VALUE")
    for label, path in (("ready_path", app.ready_path), ("open_path", app.open_path),
                        *((("login_path", app.login_path),) if app.login == "form" else ())):
        if not _PATH.fullmatch(path) or path.startswith("//"):
            raise fault(f"{label} {path!r} is not a plain absolute path")
    if app.login != "none" and not _FIELD.fullmatch(app.login_field):
        raise fault(f"login_field {app.login_field!r} is not a plain name")
    if app.idle not in IDLE_KINDS:
        raise fault(f"idle {app.idle!r} is unknown: use jupyter (a Jupyter server), args (idle_args) or leave it out")
    if (app.idle == "args") != any("{idle}" in w for w in app.idle_args):
        raise fault("idle: args goes with idle_args naming the seconds ({idle}), and idle_args with idle: args")
    if any("{idle}" in w for w in all_words):
        raise fault("{idle} belongs in idle_args only")


def _check_placeholders(words: tuple[str, ...], fault) -> None:
    for word in words:
        for name in re.findall(r"\{([^{}]*)\}", word):
            if name not in (*PLACEHOLDERS, "idle"):
                raise fault(f"{{{name}}} in {word!r} is not one of {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")


_JUPYTER = dict(
    socket_args=("--ServerApp.sock={socket}", "--ServerApp.sock_mode=0600"),
    port_args=("--ip={host}", "--port={port}", "--ServerApp.port_retries=0"),
    picks_port=True, env=("JUPYTER_RUNTIME_DIR={lab_dir}/runtime",), secret="file-env",
    secret_env="JUPYTER_TOKEN_FILE", ready_path="/api", ready_text='"version"', login="url", login_field="token",
    kernels=True, idle="jupyter")

BUILT_IN: dict[str, App] = {app.name: app.check() for app in (
    App("jupyterlab", "JupyterLab", "jupyter lab", args=("--no-browser",), open_path="/lab", **_JUPYTER),
    App("notebook", "Jupyter Notebook", "jupyter notebook", args=("--no-browser",), open_path="/tree", **_JUPYTER),
    # marimo has no Unix-socket listener: a loopback port, guarded by its token (read from the file).
    App("marimo", "marimo", "marimo edit",
        args=("--headless", "--skip-update-check", "--token-password-file={secret_file}"),
        port_args=("--host={host}", "--port={port}"), secret="file-arg", ready_path="/health",
        ready_text='"healthy"', open_path="/", login="url", login_field="access_token"),
    # code-server reads its password only from $PASSWORD or its config file; --socket ignores --bind-addr.
    App("code-server", "code-server", "code-server",
        args=("--auth=password", "--disable-telemetry", "--disable-update-check", "--ignore-last-opened"),
        socket_args=("--socket={socket}", "--socket-mode=600"), port_args=("--bind-addr={host}:{port}",),
        secret="env", secret_env="PASSWORD", ready_path="/healthz", ready_text='"status"', open_path="/",
        login="form", login_field="password", login_path="/login",
        idle="args", idle_args=("--idle-timeout-seconds={idle}",)),  # from code-server 4.106 on
)}
DEFAULT = "jupyterlab"


def declared(mapping: Mapping[str, object] | None, where: Mapping[str, str] | None = None) -> dict[str, App]:
    """The apps declared under ``lab.apps`` (name -> mapping of App's fields), each checked; ``where``: the
    file each was declared in, by name (for `apps`)."""
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"lab.apps must be a mapping of app names to their declarations, not {mapping!r}.")
    return {str(name): _one(str(name), spec, (where or {}).get(str(name), "your config"))
            for name, spec in mapping.items()}


_TUPLES = ("args", "socket_args", "port_args", "env", "idle_args")


def _one(name: str, spec: object, where: str) -> App:
    if not isinstance(spec, Mapping):
        raise ConfigError(f"lab.apps.{name} must be a mapping of its fields, not {spec!r}.")
    known = {f.name for f in fields(App)} - {"name", "declared"}
    unknown = sorted(set(map(str, spec)) - known)
    if unknown:
        raise ConfigError(f"lab.apps.{name}: {unknown[0]!r} is not a field of an app; use: {', '.join(sorted(known))}.")
    values: dict[str, object] = {}
    for key, value in spec.items():
        if key in _TUPLES:
            if isinstance(value, str) or not isinstance(value, (list, tuple)):
                raise ConfigError(f"lab.apps.{name}.{key} must be a list of words, not {value!r}.")
            value = tuple(str(v) for v in value)
        elif key in ("picks_port", "kernels"):
            value = bool(value)
        else:
            value = str(value)
        values[str(key)] = value
    values.setdefault("title", name)
    if "command" not in values:
        raise ConfigError(f"lab.apps.{name} needs a command (the program that serves the app).")
    return App(name=name, declared=where, **values).check()  # type: ignore[arg-type]


def catalogue(declared_apps: Mapping[str, App] | None = None) -> dict[str, App]:
    """Every app there is: the built-in ones, and those declared (which may replace a built-in one)."""
    return {**BUILT_IN, **(declared_apps or {})}


def lookup(name: str, declared_apps: Mapping[str, App] | None = None) -> App:
    """The app named ``name``; a ConfigError listing the apps for any other."""
    apps = catalogue(declared_apps)
    try:
        return apps[name]
    except KeyError:
        raise ConfigError(f"lab.app {name!r} is unknown: use one of {', '.join(sorted(apps))} "
                          "(or declare it under lab.apps).") from None
