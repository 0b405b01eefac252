"""The batch script that starts Jupyter on the compute node.

Slurm keeps a copy of every batch script (``scontrol write batch_script``), so the script holds no
secret: Jupyter reads its token from a 0600 file in the lab's 0700 directory (``JUPYTER_TOKEN_FILE``).
Jupyter picks its own free port on the node (``--port=0``), atomically, and writes it to its runtime file
in the lab directory, where the tool reads it; nothing guesses a port on the wrong host.
"""

from __future__ import annotations

import shlex

from . import environment, modes
from .lab_dir import JOB_LOG
from .settings import LabSettings

# Ends the job with the one line the tool reports (lab.env's steps call it when they fail).
LAB_FAIL = 'lab_fail() { echo "fabfile-lab: error: $*"; exit 1; }'

_BODY = r"""
set -u
umask 077
export JUPYTER_RUNTIME_DIR="$LAB_DIR/runtime"
export JUPYTER_TOKEN_FILE="$LAB_DIR/token"
mkdir -p "$JUPYTER_RUNTIME_DIR"
# What the tool reads instead of asking Slurm: the node the job runs on, and that it has ended.
# What the lab made on the hosts goes as soon as it is told to end: Slurm's SIGKILL follows its SIGTERM
# after KillWait seconds, whether or not Jupyter has finished shutting its kernels down by then.
lab_tidy() {
    if declare -F reverse_down >/dev/null; then reverse_down; fi  # at most 3 s
    [ -n "${LAB_SOCK_DIR:-}" ] && rm -rf "$LAB_SOCK_DIR"
    LAB_SOCK_DIR=
}
lab_end() {
    local status=$?
    kill ${JUPYTER_PID:-} ${REVERSE_PID:-} 2>/dev/null
    lab_tidy
    echo "$status" > "$LAB_DIR/ended"
}
trap lab_end EXIT
printf '%s\n' "${SLURMD_NODENAME:-$(hostname)}" > "$LAB_DIR/node.new" && mv -f "$LAB_DIR/node.new" "$LAB_DIR/node"
echo "fabfile-lab: job ${SLURM_JOB_ID:-?} on $(hostname), via $LAB_VIA"

__LAB_FAIL__

# --- environment (lab.env) and setup (lab.setup); activation scripts are not all `set -u` clean ---
set +u
__SETUP__
set -u
# --- end of setup ---
__FIND_PROGRAM__

# --- where Jupyter listens (this mode's) ---
__LISTEN__

cd __NOTEBOOK_DIR__ || exit 1
__COMMAND__ --no-browser "${LISTEN[@]}" &
JUPYTER_PID=$!
trap 'kill $JUPYTER_PID ${REVERSE_PID:-} 2>/dev/null; lab_tidy' TERM INT

# --- once Jupyter runs (this mode's) ---
__AFTER_START__
# Slurm's warning before the time limit (--signal=B:USR1@...): say so in the log, keep Jupyter running.
trap 'echo "fabfile-lab: Slurm warns that the job reaches its time limit soon (walltime)"' USR1
while :; do
    wait $JUPYTER_PID
    STATUS=$?
    kill -0 $JUPYTER_PID 2>/dev/null || break  # a trapped signal interrupts wait; Jupyter still runs
done
echo "fabfile-lab: jupyter exited with status $STATUS"
exit $STATUS
"""


def sbatch_lines(settings: LabSettings, lab_dir: str) -> list[str]:
    """``#SBATCH`` lines: the job's name, a warning signal before the time limit, ``lab.sbatch``, and
    the log in ``lab_dir`` (the lab's private directory on the cluster)."""
    # A warning signal to the batch shell 5 minutes before the time limit (logged in the job log).
    return _sbatch_words({"job-name": f"lab-{settings.name}", "signal": "B:USR1@300",
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
    way = modes.mode(settings.via)
    head = [
        "#!/bin/bash",
        *sbatch_lines(settings, lab_dir),
        "# Written by fabfile-lab. Holds no secret: the token is in a private file beside it.",
        f"LAB_DIR={shlex.quote(lab_dir)}",
        f"LAB_VIA={shlex.quote(settings.via)}",
        f"LAB_REVERSE_TARGET={target}",
        f"LAB_REVERSE_SOCKET={'1' if way.pinned and way.private(openssh) else ''}",
        "LAB_REVERSE_DIR=",
    ]
    notebook_dir = environment.shell_path(settings.notebook_dir) if settings.notebook_dir else '"$HOME"'
    body = (_BODY.replace("__LAB_FAIL__", LAB_FAIL)
            .replace("__LISTEN__", way.listen(openssh)).replace("__AFTER_START__", way.after_start or ":")
            .replace("__SETUP__", "\n".join(setup(settings)) or ":")
            .replace("__FIND_PROGRAM__", "\n".join(find_program(settings)))
            .replace("__NOTEBOOK_DIR__", notebook_dir)
            .replace("__COMMAND__", settings.command))
    return "\n".join(head) + "\n" + body


def find_program(settings: LabSettings) -> list[str]:
    """Lines that set ``LAB_PROGRAM`` to the path of ``lab.command``'s program, or end the job with the
    line the tool reports: after a broken environment, that and ``PATH`` say what went wrong."""
    program = shlex.quote(shlex.split(settings.command)[0])
    return [f"if ! LAB_PROGRAM=$(command -v {program}); then",
            f"    printf 'fabfile-lab: error: `%s` not found after setup (PATH=%s)\\n' {program} \"$PATH\"",
            "    exit 127",
            "fi"]


def setup(settings: LabSettings) -> list[str]:
    """The job's setup: ``lab.env`` rendered for a batch shell, then ``lab.setup`` as given."""
    return [*environment.setup_lines(settings.env), *settings.setup]


def doctor(settings: LabSettings, work_dir: str) -> str:
    """``lab.doctor --job``: a one-minute job that reports its node, whether it sees the marker file
    written from the login node (a shared file system), and where the program is after setup."""
    options = {**settings.sbatch, "time": "00:01:00"}
    lines = ["#!/bin/bash", *_sbatch_words({"job-name": f"lab-doctor-{settings.name}", **options}, work_dir),
             f"WORK={shlex.quote(work_dir)}", 'echo "node=$(hostname)"', 'echo "marker=$(cat "$WORK/marker")"',
             LAB_FAIL, *setup(settings), *find_program(settings), 'echo "program=$LAB_PROGRAM"']
    return "\n".join(lines) + "\n"
