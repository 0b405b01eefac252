"""Apps as data: the built-in ones, declarations checked where they enter, the words each app gets."""

from __future__ import annotations

import pytest

from fabfile_lib import apps, batch_script, browser, state
from fabfile_lib.errors import ConfigError
from fabfile_lib.settings import LabSettings

ECHO = {"title": "Echo", "command": "python3 /opt/echo.py", "args": ["--token-file={secret_file}"],
        "port_args": ["--host={host}", "--port={port}"], "secret": "file-arg", "ready_path": "/health"}


def test_the_built_in_apps_are_whole_and_jupyterlab_is_the_default():
    assert set(apps.BUILT_IN) == {"jupyterlab", "notebook", "marimo", "code-server"}
    assert LabSettings.from_config({"login": "l"}).app_spec.name == "jupyterlab"
    assert all(app.authenticated for app in apps.BUILT_IN.values())
    assert apps.BUILT_IN["marimo"].has_socket is False and apps.BUILT_IN["code-server"].has_socket


def test_a_declared_app_is_found_and_listed_where_it_was_declared():
    settings = LabSettings.from_config({"login": "l", "app": "echo", "apps": {"echo": ECHO}})
    assert settings.app_spec.title == "Echo" and settings.app_spec.secret == "file-arg"
    listed = apps.declared(settings.apps, where={"echo": "/etc/fabfile-lab.yaml"})
    assert listed["echo"].declared == "/etc/fabfile-lab.yaml"


def test_lab_command_replaces_only_the_apps_command():
    app = LabSettings.from_config({"login": "l", "command": "/opt/j/bin/jupyter lab"}).app_spec
    assert app.command == "/opt/j/bin/jupyter lab" and app.socket_args == apps.BUILT_IN["jupyterlab"].socket_args


@pytest.mark.parametrize("change,says", [
    ({"command": ""}, "command is empty"),
    ({"secret": "magic"}, "secret 'magic' is unknown: use one of file-env, file-arg, env, none"),
    ({"login": "cookie"}, "login 'cookie' is unknown"),
    ({"socket_args": ["--socket=/tmp/x"]}, "socket_args must name the socket ({socket})"),
    ({"args": ["--token-file={secret_file}", "--listen={socket}"]}, "{socket} belongs in socket_args only"),
    ({"args": ["--token={secret}"]}, "{secret} in '--token={secret}' is not one of"),
    ({"args": []}, "secret file-arg needs {secret_file} in args"),
    ({"port_args": ["--host={host}"]}, "port_args (or args) must name the port ({port})"),
    ({"ready_path": "health"}, "ready_path 'health' is not a plain absolute path"),
    ({"secret": "env"}, "secret env needs secret_env"),
    ({"colour": "red"}, "'colour' is not a field of an app"),
    ({"args": "--token-file={secret_file}"}, "lab.apps.echo.args must be a list of words"),
])
def test_a_bad_declaration_is_one_line_naming_the_app_and_the_fault(change, says):
    with pytest.raises(ConfigError) as caught:
        LabSettings.from_config({"login": "l", "app": "echo", "apps": {"echo": {**ECHO, **change}}})
    assert says in str(caught.value) and "lab.apps.echo" in str(caught.value) and "\n" not in str(caught.value)


def test_an_unknown_app_names_the_apps_there_are():
    with pytest.raises(ConfigError, match="lab.app 'rstudio' is unknown: use one of code-server, jupyterlab, marimo"):
        LabSettings.from_config({"login": "l", "app": "rstudio"})


def test_an_app_without_a_secret_runs_only_when_the_user_allows_it():
    open_app = {"command": "python3 -m http.server", "port_args": ["--bind={host}", "{port}"], "secret": "none",
                "login": "none"}
    config = {"login": "l", "app": "plain", "apps": {"plain": open_app}}
    with pytest.raises(ConfigError, match="has no secret: anyone on its node could reach it. Add it to lab.open_apps"):
        LabSettings.from_config(config)
    assert not LabSettings.from_config({**config, "open_apps": ["plain"]}).app_spec.authenticated


def test_no_secret_reaches_an_argv_and_placeholders_become_the_scripts_variables():
    settings = LabSettings.from_config({"login": "l", "app": "echo", "apps": {"echo": ECHO}})
    line = batch_script.app_line(settings.app_spec, socket=False)
    assert line == 'python3 /opt/echo.py --token-file="${LAB_SECRET_FILE}" --host="${LAB_HOST}" --port="${LAB_PORT}"'
    code = batch_script.app_line(apps.BUILT_IN["code-server"], socket=True)
    assert code.startswith('PASSWORD="$LAB_SECRET" code-server') and "LAB_SECRET" not in code.split("code-server", 1)[1]
    assert batch_script.shell_word("it's {port}") == "'it'\"'\"'s '\"${LAB_PORT}\""


def _record(tmp_path, app: str, **settings) -> state.LabRecord:
    return state.LabRecord(name="a", settings={"login": "l", **settings}, job_id="1", remote_dir="/r", token="T0K",
                           via="compute", forward_port=4000, app=app, url_path=apps.lookup(
                               app, apps.declared(settings.get("apps"))).open_path)


def test_the_browser_logs_in_the_apps_way(tmp_path):
    marimo = _record(tmp_path, "marimo")
    assert marimo.url() == "http://127.0.0.1:4000/?access_token=T0K"
    page = browser.redirect_file(tmp_path, _record(tmp_path, "code-server"), 4000).read_text()
    assert 'method="post" action="http://127.0.0.1:4000/login"' in page and 'name="password" value="T0K"' in page
    assert _record(tmp_path, "code-server").url() == "http://127.0.0.1:4000/"  # the secret goes by the form only


def test_doctor_asks_the_apps_program_for_its_socket_flag_and_reads_the_answer():
    from fabfile_lib import doctor

    code = LabSettings.from_config({"login": "l", "app": "code-server"})
    script = batch_script.doctor(code, "/h/.fabfile-lab/doctor-00aa11bb")
    assert "grep -qF -- --socket" in script and 'echo "socket=yes"' in script
    assert "socket=" not in batch_script.doctor(LabSettings.from_config({"login": "l", "app": "marimo"}), "/w")
    said = list(doctor._socket_flag(code, "node=c1\nprogram=/x/code-server\nsocket=no\n", "c1"))
    assert [c.ok for c in said] == [False] and "does not mention --socket" in said[0].detail
    assert list(doctor._socket_flag(code, "socket=yes\n", "c1"))[0].ok
