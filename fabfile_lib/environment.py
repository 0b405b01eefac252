"""``lab.env``: the software environment Jupyter runs in, as shell lines for a non-interactive batch shell.

A batch job reads no ``~/.bashrc``: ``conda activate`` alone fails there ("Run 'conda init' before
'conda activate'"), ``module`` is often undefined, and ``set -u`` breaks several activation scripts. The
lines below do what each tool documents for scripts (``conda shell.bash hook``, ``pixi shell-hook``,
sourcing a venv's ``activate``) and end the job with one ``fabfile-lab: error:`` line, which the tool
reports, when a step fails.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from .errors import ConfigError

KINDS = ("conda", "mamba", "venv", "uv", "pixi")
KEYS = (*KINDS, "modules", "init")
# Where sites keep the shell init of Environment Modules / Lmod when a batch shell has no `module`.
MODULE_INITS = ("/etc/profile.d/modules.sh", "/etc/profile.d/lmod.sh", "/usr/share/lmod/lmod/init/bash",
                "/usr/share/modules/init/bash")
EXAMPLE = "e.g. {conda: myenv} or {venv: ~/envs/lab, modules: [python/3.11]}"


def check(value: object) -> dict:
    """``lab.env`` as a plain dict, or a ConfigError that names the key and what it must be."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"lab.env must be a mapping, {EXAMPLE}, not {type(value).__name__} {value!r}."[:300])
    env = {str(k): v for k, v in value.items() if v not in (None, "", [])}
    for key, item in env.items():
        if key not in KEYS:
            raise ConfigError(f"lab.env.{key} is unknown: use one of {', '.join(KEYS)}.")
        if key == "modules":
            if isinstance(item, str) or not isinstance(item, list | tuple) \
                    or not all(isinstance(m, str) and m.strip() for m in item):
                raise ConfigError(f"lab.env.modules must be a list of module names, e.g. [python/3.11], not {item!r}.")
            env[key] = [m.strip() for m in item]
        elif not isinstance(item, str) or "\n" in item:
            raise ConfigError(f"lab.env.{key} must be a single path or name, not {item!r}.")
    chosen = [k for k in KINDS if k in env]
    if len(chosen) > 1:
        raise ConfigError(f"lab.env gives {' and '.join(chosen)}: choose one environment ({', '.join(KINDS)}).")
    return env


def shell_path(path: str) -> str:
    """A path as one shell word; a leading ``~`` still means the job's home."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def _fail(message: str) -> str:
    return f"lab_fail {shlex.quote(message)}"


def setup_lines(env: Mapping) -> list[str]:
    """Shell lines that load ``env`` in a batch shell; ``lab_fail`` (defined by the batch script) ends the
    job with one error line."""
    lines: list[str] = []
    if env.get("modules"):
        inits = " ".join(shell_path(p) for p in ([env["init"]] if env.get("init") else []) + list(MODULE_INITS))
        lines += [
            "if ! type module >/dev/null 2>&1; then",
            f"    for f in {inits} \"${{MODULESHOME:-/nonexistent}}/init/bash\"; do",
            '        [ -r "$f" ] && . "$f" && break',
            "    done",
            "fi",
            "type module >/dev/null 2>&1 || " + _fail("`module` is not defined in the batch shell: set lab.env.init "
                                                       "to your site's modules init file"),
        ]
        for name in env["modules"]:
            lines.append(f"module load {shlex.quote(name)} || {_fail(f'module load {name} failed')}")
    elif env.get("init"):
        init = env["init"]
        lines.append(f". {shell_path(init)} || {_fail(f'cannot source {init}')}")
    for kind in KINDS:
        if kind in env:
            lines += _activate(kind, env[kind])
    return lines


def _activate(kind: str, where: str) -> list[str]:
    target = shell_path(where) if "/" in where or where.startswith("~") else shlex.quote(where)
    if kind in ("conda", "mamba"):
        hook = "conda shell.bash hook" if kind == "conda" else "mamba shell hook --shell bash"
        missing = _fail(f"{kind} is not on PATH in the batch shell: load it first (lab.env.modules or lab.env.init)")
        return [
            f"command -v {kind} >/dev/null 2>&1 || {missing}",
            f'eval "$({hook})" || {_fail(f"{hook} failed")}',
            f"{kind} activate {target} || {_fail(f'{kind} activate {where} failed')}",
        ]
    if kind == "venv":
        return [f". {target}/bin/activate || {_fail(f'no virtual environment at {where} (no bin/activate)')}"]
    if kind == "uv":
        return [f". {target}/.venv/bin/activate || "
                f"{_fail(f'no .venv in {where}: run `uv sync` in {where} on the login node first')}"]
    # pixi
    return [
        f"command -v pixi >/dev/null 2>&1 || {_fail('pixi is not on PATH in the batch shell')}",
        f'eval "$(pixi shell-hook --manifest-path {target})" || {_fail(f"pixi shell-hook in {where} failed")}',
    ]
