"""One source of defaults: invoke.yaml, the tasks' ns.configure and the configuration reference's tables
(docs/configuration.md) equal the dataclasses."""

from __future__ import annotations


def _readme_defaults(prefix: str) -> dict:
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    rows = re.findall(rf"^\| `{prefix}\.(\w+)` \| `([^`]*)` \|", text, re.M)
    return {key: yaml.safe_load(value) if value not in ("", '""') else "" for key, value in rows}


def test_invoke_yaml_lists_every_lab_key_with_its_default():
    from pathlib import Path

    import yaml

    from fabfile_lib.settings import DEFAULTS
    from fabfile_lib.tasks.lab import ns

    documented = yaml.safe_load((Path(__file__).parents[2] / "invoke.yaml").read_text())["lab"]
    expected = {k: v for k, v in DEFAULTS.items() if k != "sbatch"}  # sbatch: see the comment in invoke.yaml
    assert documented == expected
    assert ns.configuration()["lab"] == expected


def test_the_readme_tables_hold_every_key_with_its_default():
    from fabfile_lib.sandbox import SandboxConfig
    from fabfile_lib.settings import DEFAULTS, config_defaults

    assert _readme_defaults("lab") == DEFAULTS
    sandbox = config_defaults(SandboxConfig)
    readme = _readme_defaults("sandbox")
    assert set(readme) == set(sandbox)
    assert {k: v for k, v in readme.items() if k not in ("dir", "user")} == \
        {k: v for k, v in sandbox.items() if k not in ("dir", "user")}  # those two are derived from the name


def test_invoke_yaml_lists_every_sandbox_key_with_its_default():
    from pathlib import Path

    import yaml

    from fabfile_lib.sandbox import SandboxConfig
    from fabfile_lib.settings import config_defaults
    from fabfile_lib.tasks.sandbox import ns

    documented = yaml.safe_load((Path(__file__).parents[2] / "invoke.yaml").read_text())["sandbox"]
    assert documented == config_defaults(SandboxConfig) == ns.configuration()["sandbox"]


def test_the_configuration_reference_names_exactly_what_a_project_may_set():
    import re
    from pathlib import Path

    from fabfile_lib import config_trust

    text = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    said = text.split("**What a project's `fabfile-lab.yaml` may set**", 1)[1].split("\n\n", 1)[0]
    keys, options = said.split("in `lab.sbatch`", 1)
    assert set(re.findall(r"`lab\.(\w+)`", keys)) == config_trust.PROJECT_KEYS
    assert set(re.findall(r"`([a-z-]+)`", options.split("only the options", 1)[1])) == config_trust.PROJECT_SBATCH


def test_each_setting_s_help_is_its_line_in_the_reference_and_invoke_yaml_explains_each_key():
    import re
    from pathlib import Path

    from fabfile_lib.settings import DEFAULTS, HELP

    root = Path(__file__).parents[2]
    rows = dict(re.findall(r"^\| `lab\.(\w+)` \| `[^`]*` \| (.*) \|$", (root / "docs" / "configuration.md").read_text(),
                           re.M))
    assert rows == HELP and set(HELP) == set(DEFAULTS)
    lines = (root / "invoke.yaml").read_text().split("\n")
    section = lines[lines.index("lab:") + 1:lines.index("sandbox:")]
    for key in DEFAULTS:
        at = next(i for i, ln in enumerate(section) if re.match(rf"  #? ?{key}:", ln))
        assert section[at - 1].lstrip().startswith("#"), f"invoke.yaml: no comment explains lab.{key}"
