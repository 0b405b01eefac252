"""The batch script: sbatch lines, the environment's lines, each mode's lines, no secret."""

from __future__ import annotations

import subprocess

import pytest

from fabfile_lib import batch_script
from fabfile_lib.settings import LabSettings


def _script(env: dict) -> str:
    return batch_script.render(LabSettings.from_config({"login": "l", "env": env}), "/h/.fabfile-lab/x-0011aabb")


def _settings(**kw) -> LabSettings:
    return LabSettings.from_config({"login": "login", **kw})


def test_launch_script_has_sbatch_options_and_no_secret():
    s = _settings(sbatch={"partition": "gpu", "cpus-per-task": 4, "exclusive": True, "gpus": False},
                  setup=["module load jupyter"], command="jupyter lab")
    script = batch_script.render(s, "/home/u/.fabfile-lab/my lab-0011aabb")
    assert "#SBATCH --partition=gpu" in script and "#SBATCH --cpus-per-task=4" in script
    assert "#SBATCH --exclusive" in script and "--gpus" not in script
    assert '#SBATCH --output="/home/u/.fabfile-lab/my lab-0011aabb/job.log"' in script  # sbatch keeps it whole
    assert "LAB_DIR='/home/u/.fabfile-lab/my lab-0011aabb'" in script  # quoted for the shell
    assert 'JUPYTER_TOKEN_FILE="$LAB_SECRET_FILE"' in script and "JUPYTER_TOKEN=" not in script
    assert 'LAB_SECRET_FILE="$LAB_DIR/token"' in script
    # compute mode over OpenSSH: a private socket in a new 0700 directory on the node's own disk, no port
    assert '--ServerApp.sock="${LAB_SOCKET}" --ServerApp.sock_mode=0600' in script
    assert "mktemp -d /tmp/fl-" in script and "--port=" not in script
    assert script.index("module load jupyter") < script.index("jupyter lab --no-browser")
    # where Paramiko carries the forward, a port on the node's loopback that Jupyter picks itself
    tcp = batch_script.render(s, "/home/u/.fabfile-lab/my lab-0011aabb", openssh=False)
    assert '--port="${LAB_PORT}"' in tcp and "LAB_PORT=0" in tcp and "LAB_HOST=127.0.0.1" in tcp
    assert "--ServerApp.sock=" not in tcp


@pytest.mark.parametrize("app,words", [
    ("marimo", ['--token-password-file="${LAB_SECRET_FILE}"', '--port="${LAB_PORT}"', "lab_free_port"]),
    ("code-server", ['PASSWORD="$LAB_SECRET" code-server', '--socket="${LAB_SOCKET}"', "--socket-mode=600"]),
    ("notebook", ["jupyter notebook --no-browser", '--ServerApp.sock="${LAB_SOCKET}"']),
])
def test_each_app_gets_its_words_and_its_secret_outside_any_argv(app, words):
    script = batch_script.render(_settings(app=app), "/h/.fabfile-lab/x-0011aabb")
    assert all(w in script for w in words), [ln for ln in script.splitlines() if app.split("-")[0] in ln]
    assert "> >(lab_mask) 2>&1 &" in script  # what the app prints reaches the log with the secret masked


def test_the_mask_hides_the_secret_in_what_the_app_prints(tmp_path):
    """The batch script's own filter, run by bash: the secret in a line is masked, the rest kept."""
    script = batch_script._BODY.split("lab_mask() {", 1)[1].split("\n}\n", 1)[0]
    proc = subprocess.run(["bash", "-c", f'LAB_SECRET="s3 [*]cret"\nlab_mask() {{{script}\n}}\nlab_mask'],
                          input="url ?t=s3 [*]cret&x\nplain\nlast", text=True, capture_output=True, check=True)
    assert proc.stdout == "url ?t=<secret>&x\nplain\nlast\n"


def test_sbatch_values_with_blanks_are_quoted_and_defaults_kept():
    s = _settings(sbatch={"comment": "two words", "partition": "debug"})
    lines = batch_script.sbatch_lines(s, "/lab")
    assert '#SBATCH --comment="two words"' in lines and "#SBATCH --partition=debug" in lines
    assert "#SBATCH --time=01:00:00" in lines  # the default limit stays unless the site's is wanted
    assert "#SBATCH --time" not in " ".join(batch_script.sbatch_lines(_settings(sbatch={"time": ""}), "/lab"))


def test_conda_is_activated_the_way_a_batch_shell_needs():
    script = _script({"conda": "~/envs/lab", "modules": ["anaconda3/2024"]})
    hook = script.index('eval "$(conda shell.bash hook)"')
    assert script.index("module load anaconda3/2024") < hook < script.index('conda activate "$HOME"/envs/lab')
    assert script.index("set +u") < hook < script.index("set -u\n# --- end of setup")
    assert "/etc/profile.d/modules.sh" in script  # `module` is defined first where the batch shell lacks it


@pytest.mark.parametrize("env,expect", [
    ({"venv": "/opt/venvs/lab"}, ". /opt/venvs/lab/bin/activate || lab_fail"),
    ({"uv": "~/proj"}, '. "$HOME"/proj/.venv/bin/activate || lab_fail'),
    ({"pixi": "/p/proj"}, 'eval "$(pixi shell-hook --manifest-path /p/proj)"'),
    ({"mamba": "lab"}, 'eval "$(mamba shell hook --shell bash)"'),
    ({"init": "/etc/profile"}, ". /etc/profile || lab_fail"),
    ({"venv": "/a b/c"}, ". '/a b/c'/bin/activate"),
])
def test_each_environment_kind(env, expect):
    script = _script(env)
    assert expect in script
    assert script.index(expect) < script.index("LAB_PROGRAM=$(command -v jupyter)")


def test_rendered_scripts_are_valid_bash():
    for env in ({"conda": "x", "modules": ["a", "b/1"], "init": "/i"}, {"pixi": "/p"}, {"uv": "~"}, {}):
        proc = subprocess.run(["bash", "-n"], input=_script(env), text=True, capture_output=True, check=False)
        assert proc.returncode == 0, proc.stderr


def test_a_notebook_dir_under_the_home_is_the_jobs_home_and_percent_is_refused():
    from fabfile_lib.errors import ConfigError

    settings = LabSettings.from_config({"login": "l", "notebook_dir": "~/work dir"})
    assert 'cd "$HOME"/\'work dir\' || exit 1' in batch_script.render(settings, "/h/.fabfile-lab/a-0011aabb")
    for key in ("remote_dir", "notebook_dir"):
        with pytest.raises(ConfigError, match="'%'"):
            LabSettings.from_config({"login": "l", key: "~/labs/%u"})


def test_a_lab_is_never_requeued_unless_lab_sbatch_says_so():
    lines = batch_script.sbatch_lines(_settings(), "/h/.fabfile-lab/x-0011aabb")
    assert "#SBATCH --no-requeue" in lines
    asked = batch_script.sbatch_lines(_settings(sbatch={"requeue": True}), "/h/.fabfile-lab/x-0011aabb")
    assert asked.index("#SBATCH --requeue") > asked.index("#SBATCH --no-requeue")  # sbatch keeps the last


def _function(name: str) -> str:
    """One shell function of the batch script, as it stands there."""
    body = batch_script._BODY.split(f"{name}() {{", 1)[1].split("\n}\n", 1)[0]
    return f"{name}() {{{body}\n}}\n"


def test_the_lab_s_sbatch_marks_each_job_and_lists_it_and_its_end_cancels_them_once(tmp_path):
    """The batch script's sbatch, run by bash over a fake sbatch and scancel: the comment goes first (a
    caller's own comes later and wins), the output is the real one's, the id is listed; the job's end
    cancels the listed jobs once, and not at all once `cancel --keep-jobs` has left its mark."""
    fake = tmp_path / "slurm"
    fake.mkdir()
    (fake / "sbatch").write_text('#!/bin/sh\necho "$@" >> "$CALLS"\necho "Submitted batch job 4$(wc -l < "$CALLS")"\n')
    (fake / "scancel").write_text('#!/bin/sh\necho "scancel $*" >> "$CALLS"\n')
    for f in fake.iterdir():
        f.chmod(0o755)
    lab = tmp_path / "lab"
    lab.mkdir()
    script = (_function("lab_own_jobs") + _function("lab_end_jobs") +
              'lab_own_jobs\nsbatch --wrap "sleep 600"\nsbatch --parsable --comment=mine x.sh\n'
              'command -v sbatch\n'
              'PATH=/usr/bin:/bin bash -c "sbatch --wrap date"\n'  # a login shell's profile set PATH anew
              'lab_end_jobs\nlab_end_jobs\n')
    env = {"PATH": f"{fake}:/usr/bin:/bin", "CALLS": str(tmp_path / "calls"), "LAB_DIR": str(lab),
           "SLURM_JOB_ID": "77"}
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["Submitted batch job 41", "Submitted batch job 42", "sbatch",
                                "Submitted batch job 43", "fabfile-lab: ended the jobs the lab had started: 41 42 43 "]
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[:3] == ["--comment=fabfile-lab:77 --wrap sleep 600",
                         "--comment=fabfile-lab:77 --parsable --comment=mine x.sh",
                         "--comment=fabfile-lab:77 --wrap date"]
    assert calls[3:] == ["scancel 41 42 43"]  # once
    assert (lab / "jobs").read_text() == "41\n42\n43\n"
    (lab / "keep-jobs").write_text("")
    subprocess.run(["bash", "-c", _function("lab_end_jobs") + "lab_end_jobs"], env=env, check=True)
    assert (tmp_path / "calls").read_text().splitlines()[3:] == ["scancel 41 42 43"]  # kept: not cancelled again


def test_slurm_s_warning_at_any_moment_of_the_start_only_writes_a_line(tmp_path):
    """The whole script, run by bash: a time limit under the warning's lead (``B:USR1@300``) sends USR1 as
    the job starts, here during setup, and the job goes on (an untrapped USR1 ended the batch shell, and its
    EXIT trap the app, a moment after it listened: seen in the sandbox)."""
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "token").write_text("s3cret\n")
    settings = _settings(app="t", apps={"t": {"command": "true", "secret": "none", "login": "none"}}, open_apps=["t"],
                         notebook_dir=str(tmp_path), setup=["kill -USR1 $$", "echo set up"])
    script = batch_script.render(settings, str(lab))
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30, check=False,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and (lab / "ended").read_text() == "0\n", proc.stdout + proc.stderr
    assert "fabfile-lab: Slurm warns that the job reaches its time limit soon (walltime)" in lines
    assert "set up" in lines and "fabfile-lab: t exited with status 0" in lines


def test_the_app_s_socket_is_seen_within_moments_without_a_process_per_look(tmp_path):
    """The whole script, run by bash, with an app that makes its socket after a while: runtime/app.json
    names it at most a few looks (0.01 s each) later, and no look started a process (a ``sleep`` on PATH
    would have said so)."""
    lab, bin_dir, calls = tmp_path / "lab", tmp_path / "bin", tmp_path / "sleeps"
    lab.mkdir()
    bin_dir.mkdir()
    (lab / "token").write_text("s3cret\n")
    (bin_dir / "sleep").write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec /bin/sleep "$@"\n')
    (bin_dir / "sleep").chmod(0o755)
    app = ("import socket, sys, time; time.sleep(0.3); s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); "
           "open(sys.argv[2], 'w').write(repr(time.time())); s.listen(); time.sleep(0.2)")
    settings = _settings(app="s", apps={"s": {"command": "python3", "args": ["-c", app],
                                              "socket_args": ["{socket}", f"{tmp_path}/bound"],
                                              "secret": "none", "login": "none"}},
                         open_apps=["s"], notebook_dir=str(tmp_path), via="compute")
    proc = subprocess.run(["bash", "-c", batch_script.render(settings, str(lab))], capture_output=True, text=True,
                          timeout=30, check=False, env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen_after = (lab / "runtime" / "app.json").stat().st_mtime - float((tmp_path / "bound").read_text())
    assert 0 <= seen_after < 0.5, seen_after  # 0.01 s looks; a generous bound for a loaded machine
    assert not calls.exists(), calls.read_text()  # no `sleep` process per look (nor any other here)
