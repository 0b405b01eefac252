"""lab.env validation."""

from __future__ import annotations

import pytest

from fabfile_lib import environment
from fabfile_lib.errors import ConfigError


@pytest.mark.parametrize("env,words", [
    ("myenv", "lab.env must be a mapping"),
    ({"conda": "a", "venv": "/b"}, "conda and venv: choose one"),
    ({"docker": "x"}, "lab.env.docker is unknown"),
    ({"modules": "python"}, "lab.env.modules must be a list"),
    ({"venv": ["a"]}, "lab.env.venv must be a single path"),
])
def test_bad_environments_are_one_line(env, words):
    with pytest.raises(ConfigError, match=words):
        environment.check(env)
