import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.demiurge.gateway.plugins.filter.state_path import FilterModule


def test_filter_builds_paths_and_turns_bad_input_into_filter_errors():
    state_path = FilterModule().filters()["state_path"]
    assert state_path("ci-001", "pdns", base="/srv") == "/srv/ci-001/pdns"
    with pytest.raises(AnsibleFilterError, match="Invalid environment name"):
        state_path("../etc", base="/srv")
