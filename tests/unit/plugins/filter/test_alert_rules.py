import pathlib

import pytest
import yaml

from ansible.errors import AnsibleFilterError

from ansible_collections.demiurge.gateway.plugins.filter.alert_rules import alert_rules

SHIPPED = (pathlib.Path(__file__).resolve().parents[4] / "roles/monitoring/files/demiurge_gateway.rules.yml").read_text()


def rules(text):
    return {rule["alert"]: rule for group in yaml.safe_load(text)["groups"] for rule in group["rules"]}


def test_hold_times_and_runbook_links_are_replaced_and_the_rest_kept():
    tuned = rules(alert_rules(SHIPPED, {"DemiurgeGatewayPoolExhausted": "2s"}, "https://ops.example/runbooks.html"))
    shipped = rules(SHIPPED)
    assert tuned["DemiurgeGatewayPoolExhausted"]["for"] == "2s"
    assert tuned["DemiurgeGatewayReadyBelowFloor"]["for"] == shipped["DemiurgeGatewayReadyBelowFloor"]["for"]
    assert tuned["DemiurgeGatewayPoolExhausted"]["annotations"]["runbook_url"] == "https://ops.example/runbooks.html#pool-exhausted"
    assert tuned["DemiurgeGatewayPoolExhausted"]["expr"] == shipped["DemiurgeGatewayPoolExhausted"]["expr"]


def test_every_alert_links_its_own_runbook_section():
    runbooks = (pathlib.Path(__file__).resolve().parents[4] / "docs/runbooks.md").read_text()
    for name, rule in rules(SHIPPED).items():
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert "\n## " in runbooks and ("{#%s}" % anchor in runbooks or "<a id=\"%s\"></a>" % anchor in runbooks), name


def test_an_unknown_alert_name_is_an_error_naming_the_known_ones():
    with pytest.raises(AnsibleFilterError, match="DemiurgeGatewayPoolExhausted"):
        alert_rules(SHIPPED, {"PoolExhaustd": "1s"})
