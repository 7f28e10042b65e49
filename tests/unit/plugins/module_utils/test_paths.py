import pytest

from ansible_collections.demiurge.gateway.plugins.module_utils._errors import InvalidInputError
from ansible_collections.demiurge.gateway.plugins.module_utils._paths import (
    DEFAULT_LOCAL_DEV_DIR,
    local_dev_dir,
    state_path,
    validate_env_name,
)


def test_root_comes_from_environment_then_default():
    assert local_dev_dir(environ={"LOCAL_DEV_DIR": "/srv/dev/"}) == "/srv/dev"
    assert local_dev_dir(environ={}) == DEFAULT_LOCAL_DEV_DIR
    assert local_dev_dir(base="/opt/x", environ={"LOCAL_DEV_DIR": "/srv/dev"}) == "/opt/x"


def test_state_path_joins_parts_under_the_environment():
    env = {"LOCAL_DEV_DIR": "/srv/dev"}
    assert state_path("dev-001", environ=env) == "/srv/dev/dev-001"
    assert state_path("dev-001", "nginx", "routes/a.conf", environ=env) == "/srv/dev/dev-001/nginx/routes/a.conf"


@pytest.mark.parametrize("name", ["", "a/b", "..", "a..b", " dev", "dev 1", "dev\t1", "-dev", ".hidden", None, 7, "x" * 64,
                                  "dev-001\n", "dev-001 "])
def test_bad_environment_names_are_refused(name):
    with pytest.raises(InvalidInputError, match="Invalid environment name"):
        validate_env_name(name)


@pytest.mark.parametrize("part", ["..", "a/../b", "", "/abs", "a//b", " x"])
def test_parts_cannot_leave_the_environment(part):
    with pytest.raises(InvalidInputError, match="Invalid state path component"):
        state_path("dev-001", part, environ={"LOCAL_DEV_DIR": "/srv"})


def test_relative_root_is_refused():
    with pytest.raises(InvalidInputError, match="not an absolute path"):
        local_dev_dir(environ={"LOCAL_DEV_DIR": "relative/dir"})
