import pytest

from ansible_collections.demiurge.gateway.plugins.module_utils._dns_names import (
    ORG_LABEL,
    canonical,
    in_zone,
    organization_id,
    organization_label,
    require_in_zone,
)
from ansible_collections.demiurge.gateway.plugins.module_utils._errors import InvalidInputError


def test_canonical_adds_trailing_dot_and_lowercases():
    assert canonical("Example.TEST") == "example.test."
    assert canonical("example.test.") == "example.test."
    assert canonical("*.example.test") == "*.example.test."


@pytest.mark.parametrize("name", ["", ".", "a..b", "-a.test", "a-.test", "a b.test", "a.*.test", "x" * 64 + ".test"])
def test_malformed_names_are_refused(name):
    with pytest.raises(InvalidInputError):
        canonical(name)


def test_zone_membership():
    assert in_zone("org-1.z.test.", "z.test.")
    assert in_zone("z.test.", "z.test.")
    assert not in_zone("xz.test.", "z.test.")
    with pytest.raises(InvalidInputError, match="not inside zone"):
        require_in_zone("a.other.test.", "z.test.")


def test_org_label_shape():
    assert ORG_LABEL.match("org-0b5e9b7c-1a2b-4c3d-8e9f-001122334455")
    assert not ORG_LABEL.match("org-0B5E9B7C-1a2b-4c3d-8e9f-001122334455")
    assert not ORG_LABEL.match("org-123")


@pytest.mark.parametrize("value", [" 0b5e9b7c-1a2b-4c3d-8e9f-001122334455", "0b5e9b7c-1a2b-4c3d-8e9f-001122334455\n",
                                   "0b5e9b7c-1a2b-4c3d-8e9f-001122334455 ", "{0b5e9b7c-1a2b-4c3d-8e9f-001122334455}"])
def test_an_organization_id_is_the_uuid_alone(value):
    with pytest.raises(InvalidInputError, match="is not a UUID"):
        organization_id(value)


def test_an_organization_id_in_any_case_has_one_canonical_form():
    assert organization_id("0B5E9B7C-1A2B-4C3D-8E9F-001122334455") == "0b5e9b7c-1a2b-4c3d-8e9f-001122334455"
    assert organization_label("0B5E9B7C-1A2B-4C3D-8E9F-001122334455") == "org-0b5e9b7c-1a2b-4c3d-8e9f-001122334455"
