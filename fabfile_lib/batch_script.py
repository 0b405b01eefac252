"""The batch script that starts the lab's app (``apps.py``) on the compute node.

Slurm keeps a copy of every batch script (``scontrol write batch_script``), so the script holds no
secret: the app reads it from a 0600 file in the lab's 0700 directory (or from a variable the batch shell
sets for the app's process alone), and what the app prints reaches the job log with the secret masked.
Once the app listens -- on its private socket, or on a port it picked itself (Jupyter, ``--port=0``) or
the script found free on the node -- the script writes where to ``runtime/app.json``, which the tool reads.
"""

from __future__ import annotations

import re
import shlex

from . import apps, environment, idle_watch, modes
from .lab_dir import JOB_LOG
from .settings import LabSettings

# Ends the job with the one line the tool reports (lab.env's steps call it when they fail).
LAB_FAIL = 'lab_fail() { echo "fabfile-lab: error: $*"; exit 1; }'

_BODY = r"""
set -u
umask 077
LAB_SECRET_FILE="$LAB_DIR/token"
LAB_SECRET=$(<"$LAB_SECRET_FILE")  # in this shell only: to mask it in what the app prints
mkdir -p "$LAB_DIR/runtime"
# What the lab made on the hosts goes as soon as it is told to end: Slurm's SIGKILL follows its SIGTERM
# after KillWait seconds, whether or not the app has finished shutting down by then.
lab_tidy() {
    lab_end_jobs
    if declare -F reverse_down >/dev/null; then reverse_down; fi  # at most 3 s
    [ -n "${LAB_SOCK_DIR:-}" ] && rm -rf "$LAB_SOCK_DIR"
    LAB_SOCK_DIR=
}
# The jobs the lab started (its sbatch, below, lists them) end with it, unless `cancel --keep-jobs` said
# otherwise: one scancel, as the lab's own job is told to end.
lab_end_jobs() {
    local ids
    [ -z "${LAB_JOBS_ENDED:-}" ] && [ -s "$LAB_DIR/jobs" ] && [ ! -e "$LAB_DIR/keep-jobs" ] || return 0
    LAB_JOBS_ENDED=1
    ids=$(grep -E '^[0-9]+(_[0-9]+)?$' "$LAB_DIR/jobs" | sort -u | tr '\n' ' ')
    [ -n "$ids" ] || return 0
    scancel $ids 2>/dev/null
    echo "fabfile-lab: ended the jobs the lab had started: $ids"
}
# sbatch, for the app and all it starts (kernels, terminals, dask-jobqueue): the real one, with the job
# marked as the lab's (--comment; a --comment of the caller's own comes later and wins) and its id listed
# in $LAB_DIR/jobs, which the tool reads instead of asking Slurm.
lab_own_jobs() {
    local real
    real=$(command -v sbatch) || return 0
    mkdir -p "$LAB_DIR/bin" || return 0
    {
        echo '#!/bin/bash'
        echo '# Written by fabfile-lab: a job submitted from the lab is the lab'"'"'s (fabfile-lab status lists it).'
        printf 'real=%q jobs=%q tag=%q\n' "$real" "$LAB_DIR/jobs" "fabfile-lab:${SLURM_JOB_ID:-0}"
        cat <<'LAB_SHIM'
out=$("$real" --comment="$tag" "$@")
status=$?
[ -n "$out" ] && printf '%s\n' "$out"
id=$(printf '%s\n' "$out" | sed -n -e 's/^Submitted batch job \([0-9][0-9]*\).*/\1/p' \
                                  -e 's/^\([0-9][0-9]*\)\(;.*\)\{0,1\}$/\1/p' | head -n 1)
[ -n "$id" ] && printf '%s\n' "$id" >> "$jobs"
exit $status
LAB_SHIM
    } > "$LAB_DIR/bin/sbatch" && chmod 700 "$LAB_DIR/bin/sbatch" && export PATH="$LAB_DIR/bin:$PATH" || return 0
    # A terminal of the app runs a login shell, whose profile may set PATH anew: an exported function
    # outlives that, so sbatch typed there is the lab's too (bash; Python's subprocess goes by PATH).
    eval "sbatch() { $(printf '%q' "$LAB_DIR/bin/sbatch") \"\$@\"; }"
    export -f sbatch
}
lab_end() {
    local status=$?
    kill ${APP_PID:-} ${REVERSE_PID:-} ${LAB_IDLE_PID:-} 2>/dev/null
    lab_tidy
    echo "$status" > "$LAB_DIR/ended"
}
trap lab_end EXIT
# Slurm's warning before the time limit (--signal=B:USR1@...): said in the log, the job kept. Set before
# anything else: a time limit under the warning's lead sends it as the job starts, and an untrapped USR1
# ends the batch shell (and so the app) at once.
trap 'echo "fabfile-lab: Slurm warns that the job reaches its time limit soon (walltime)"' USR1
# What the tool reads instead of asking Slurm: the node the job runs on, and that it has ended.
printf '%s\n' "${SLURMD_NODENAME:-$(hostname)}" > "$LAB_DIR/node.new" && mv -f "$LAB_DIR/node.new" "$LAB_DIR/node"
echo "fabfile-lab: job ${SLURM_JOB_ID:-?} on $(hostname), via $LAB_VIA, app $LAB_APP"

__LAB_FAIL__
# The app's output, with its secret masked, into the job log.
lab_mask() {
    local line
    while IFS= read -r line || [ -n "$line" ]; do
        [ -n "$LAB_SECRET" ] && line=${line//"$LAB_SECRET"/"<secret>"}
        printf '%s\n' "$line"
    done
}
# Whether a TCP port of this node listens (state 0A), or is used at all, by /proc/net/tcp and tcp6.
lab_port() {
    awk -v p="$(printf '%04X' "$2")" -v any="$1" \
        '{ split($2, a, ":") } a[2] == p && (any == "used" || $4 == "0A") { f = 1 } END { exit !f }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
lab_free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 40000))
        lab_port used "$p" || { echo "$p"; return 0; }
    done
    return 1
}
# Until the app listens: its socket, or its port (an app that picks its own writes it in Jupyter's
# runtime file); then what it listens on goes to runtime/app.json, which the tool reads.
lab_await_app() {
    local port step=0.05 tick=
    # A socket is looked at without a process per look: often. Each pause is a read, with that timeout,
    # of a pipe that never has data (no `sleep` process either), opened here so the app does not inherit it.
    [ -n "${LAB_SOCKET:-}" ] && step=0.01
    exec {tick}<> <(:) 2>/dev/null || tick=
    while kill -0 $APP_PID 2>/dev/null; do
        if [ -n "${LAB_SOCKET:-}" ]; then
            [ -S "$LAB_SOCKET" ] && { LAB_END=$LAB_SOCKET; port=0; break; }
        else
            port=$LAB_PORT
            [ "$port" = 0 ] && port=$(sed -n 's/^ *"port": *\([1-9][0-9]*\).*/\1/p' \
                                      "$LAB_DIR/runtime/jpserver-$APP_PID.json" 2>/dev/null)
            [ -n "$port" ] && lab_port listens "$port" && { LAB_END="127.0.0.1:$port"; break; }
        fi
        if [ -n "$tick" ]; then read -r -t "$step" -u "$tick" _ || :; else sleep "$step"; fi
    done
    [ -n "$tick" ] && exec {tick}>&-
    [ -n "${LAB_END:-}" ] || return 1
    printf '{"port": %s, "sock": "%s", "hostname": "%s"}\n' "$port" "${LAB_SOCKET:-}" "${LAB_HOST:-}" \
        > "$LAB_DIR/runtime/app.json.new" && mv -f "$LAB_DIR/runtime/app.json.new" "$LAB_DIR/runtime/app.json"
}

# --- environment (lab.env) and setup (lab.setup); activation scripts are not all `set -u` clean ---
set +u
__SETUP__
set -u
# --- end of setup ---
__FIND_PROGRAM__
lab_own_jobs

# --- where the app listens (this mode's and this app's) ---
__LISTEN__

cd __NOTEBOOK_DIR__ || exit 1
__APP__ > >(lab_mask) 2>&1 &
APP_PID=$!
trap 'kill $APP_PID ${REVERSE_PID:-} 2>/dev/null; lab_tidy' TERM INT
LAB_END=
lab_await_app

# --- once the app listens (this mode's) ---
__AFTER_START__
__IDLE__
while :; do
    wait $APP_PID
    STATUS=$?
    kill -0 $APP_PID 2>/dev/null || break  # a trapped signal interrupts wait; the app still runs
done
echo "fabfile-lab: $LAB_APP exited with status $STATUS"
exit $STATUS
"""
# Where the app listens on a private socket: a short directory on the node's own disk (a socket path holds
# about 100 bytes; the shared filesystem is seen by every node), 0700 from mktemp, removed as the job ends.
_LISTEN_SOCKET = r"""LAB_SOCK_DIR=$(mktemp -d /tmp/fl-XXXXXXXX) \
    || lab_fail "cannot make a private directory in /tmp on $(hostname) for the app's socket"
LAB_SOCKET="$LAB_SOCK_DIR/app.sock"
"""
_FREE_PORT = 'LAB_PORT=$(lab_free_port) || lab_fail "no free TCP port found on $(hostname)"'
_SHELL_VARS = {"socket": "LAB_SOCKET", "host": "LAB_HOST", "port": "LAB_PORT", "secret_file": "LAB_SECRET_FILE",
               "lab_dir": "LAB_DIR", "idle": "LAB_IDLE"}


def shell_word(word: str) -> str:
    """``word`` for bash, its placeholders (``{port}``...) as the batch script's variables, the rest quoted."""
    parts = re.split(r"\{(" + "|".join(_SHELL_VARS) + r")\}", word)
    return "".join(f'"${{{_SHELL_VARS[p]}}}"' if i % 2 else (shlex.quote(p) if p else "")
                   for i, p in enumerate(parts)) or "''"


def app_line(app: apps.App, socket: bool, *, idle: bool = False) -> str:
    """The line that starts the app: its environment (prefix assignments: in no argv), its words (with its
    own idle setting, where it has one and lab.idle is set)."""
    env = [f"{name}={shell_word(value)}" for name, _, value in (e.partition("=") for e in app.env)]
    if app.secret == "file-env":
        env.append(f'{app.secret_env}="$LAB_SECRET_FILE"')
    elif app.secret == "env":
        env.append(f'{app.secret_env}="$LAB_SECRET"')
    listen = app.socket_args if socket else app.port_args
    own_idle = app.idle_args if idle and app.idle == "args" else ()
    words = [shlex.quote(w) for w in shlex.split(app.command)] + [shell_word(w) for w in (*app.args, *listen,
                                                                                          *own_idle)]
    return " ".join([*env, *words])


def listen_lines(app: apps.App, way: modes.Mode, openssh: bool) -> str:
    """Where the app listens: a private socket, or the mode's address and a port."""
    if way.private(openssh) and app.has_socket:
        return _LISTEN_SOCKET
    return f"{way.bind}\n{'LAB_PORT=0' if app.picks_port else _FREE_PORT}"


def sbatch_lines(settings: LabSettings, lab_dir: str) -> list[str]:
    """``#SBATCH`` lines: the job's name, a warning signal before the time limit, no requeue, ``lab.sbatch``,
    and the log in ``lab_dir`` (the lab's private directory on the cluster).

    A lab is never requeued: Slurm requeues a batch job whose node failed (or that a restarted slurmctld
    finds gone), and the lab would start again later, perhaps on another node, holding an allocation that
    nobody knows about -- its user was told it ended. ``lab.sbatch: {requeue: true}`` says otherwise."""
    # A warning signal to the batch shell 5 minutes before the time limit (logged in the job log).
    return _sbatch_words({"job-name": f"lab-{settings.name}", "signal": "B:USR1@300", "no-requeue": True,
                          **{str(k): v for k, v in settings.sbatch.items()}}, lab_dir)


def _sbatch_words(options: dict, lab_dir: str) -> list[str]:
    options = {**options, "output": f"{lab_dir}/{JOB_LOG}"}
    lines = []
    for key, value in options.items():
        if value is True:
            lines.append(f"#SBATCH --{key}")
        elif value not in (False, None, ""):
            text = str(value)
            # sbatch splits #SBATCH lines on blanks but keeps a double-quoted word whole.
            lines.append(f'#SBATCH --{key}="{text}"' if any(c.isspace() for c in text) else f"#SBATCH --{key}={text}")
    return lines


def render(settings: LabSettings, lab_dir: str, openssh: bool = True) -> str:
    """The batch script for one lab whose private directory on the cluster is ``lab_dir``. ``openssh``:
    OpenSSH carries the laptop's forward, so Jupyter can listen on a private socket (``modes.py``)."""
    target = shlex.quote(settings.reverse_target) if settings.reverse_target else '"${SLURM_SUBMIT_HOST}"'
    way, app, idle = modes.mode(settings.via), settings.app_spec, settings.idle_seconds
    head = [
        "#!/bin/bash",
        *sbatch_lines(settings, lab_dir),
        "# Written by fabfile-lab. Holds no secret: the token is in a private file beside it.",
        f"LAB_DIR={shlex.quote(lab_dir)}",
        f"LAB_VIA={shlex.quote(settings.via)}",
        f"LAB_APP={shlex.quote(app.name)}",
        f"LAB_REVERSE_TARGET={target}",
        f"LAB_REVERSE_SOCKET={'1' if way.pinned and way.private(openssh) else ''}",
        "LAB_REVERSE_DIR=",
        f"LAB_IDLE={idle} LAB_IDLE_WARN={idle_watch.warn_before(idle)} LAB_IDLE_STEP={idle_watch.step(idle)}",
    ]
    notebook_dir = environment.shell_path(settings.notebook_dir) if settings.notebook_dir else '"$HOME"'
    body = (_BODY.replace("__LAB_FAIL__", LAB_FAIL)
            .replace("__LISTEN__", listen_lines(app, way, openssh)).replace("__AFTER_START__", way.after_start or ":")
            .replace("__SETUP__", "\n".join(setup(settings)) or ":")
            .replace("__FIND_PROGRAM__", "\n".join(find_program(settings) + (idle_flag_check(app) if idle else [])))
            .replace("__NOTEBOOK_DIR__", notebook_dir)
            .replace("__APP__", app_line(app, way.private(openssh) and app.has_socket, idle=bool(idle)))
            .replace("__IDLE__", f"{idle_watch.SHELL}lab_idle_watch" if idle and app.idle == "jupyter" else ":"))
    return "\n".join(head) + "\n" + body


def find_program(settings: LabSettings) -> list[str]:
    """Lines that set ``LAB_PROGRAM`` to the path of the app's program, or end the job with the
    line the tool reports: after a broken environment, that and ``PATH`` say what went wrong."""
    program = shlex.quote(settings.app_spec.program)
    return [f"if ! LAB_PROGRAM=$(command -v {program}); then",
            f"    printf 'fabfile-lab: error: `%s` not found after setup (PATH=%s)\\n' {program} \"$PATH\"",
            "    exit 127",
            "fi"]


def idle_flag_check(app: apps.App) -> list[str]:
    """For an app whose own setting ends it when idle (``idle: args``): lines that end the job with one
    line if the program here does not know that flag (code-server has it from 4.106 on)."""
    if app.idle != "args":
        return []
    flag = shlex.quote(app.idle_args[0].split("=", 1)[0].split("{", 1)[0])
    words = " ".join(shlex.quote(w) for w in shlex.split(app.command)[1:])
    return [f'{{ "$LAB_PROGRAM" {words} --help-all 2>/dev/null || "$LAB_PROGRAM" {words} --help 2>&1; }} '
            f'| grep -qF -- {flag} || lab_fail "$LAB_APP on $(hostname) has no {flag.strip(chr(39))}, which lab.idle '
            f'needs: set lab.idle: 0 for it, or use a version that has it"']


def socket_flag_check(app: apps.App) -> list[str]:
    """Doctor's job: whether the app's program knows its socket flag (its --help-all, or --help, says it)."""
    if not app.has_socket:
        return []
    flag = shlex.quote(app.socket_args[0].split("=", 1)[0].split("{", 1)[0])
    words = " ".join(shlex.quote(w) for w in shlex.split(app.command)[1:])
    return [f'if {{ "$LAB_PROGRAM" {words} --help-all 2>/dev/null || "$LAB_PROGRAM" {words} --help 2>&1; }} '
            f'| grep -qF -- {flag}; then echo "socket=yes"; else echo "socket=no"; fi']


def setup(settings: LabSettings) -> list[str]:
    """The job's setup: ``lab.env`` rendered for a batch shell, then ``lab.setup`` as given."""
    return [*environment.setup_lines(settings.env), *settings.setup]


def doctor(settings: LabSettings, work_dir: str) -> str:
    """``lab.doctor --job``: a one-minute job that reports its node, whether it sees the marker file
    written from the login node (a shared file system), and where the program is after setup."""
    options = {**settings.sbatch, "time": "00:01:00"}
    lines = ["#!/bin/bash", *_sbatch_words({"job-name": f"lab-doctor-{settings.name}", **options}, work_dir),
             f"WORK={shlex.quote(work_dir)}", 'echo "node=$(hostname)"', 'echo "marker=$(cat "$WORK/marker")"',
             LAB_FAIL, *setup(settings), *find_program(settings), 'echo "program=$LAB_PROGRAM"',
             *socket_flag_check(settings.app_spec)]
    return "\n".join(lines) + "\n"
