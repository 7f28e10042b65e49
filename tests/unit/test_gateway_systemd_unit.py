"""The systemd unit the gateway_standin role writes for a gateway, rendered by Ansible's own
templating and checked by systemd's own parser (systemd-analyze verify). No machine here runs
systemd as PID 1, so the units are not started in the suite: this is what proves them."""

import shutil
import subprocess
from pathlib import Path

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "roles" / "gateway_standin" / "templates" / "gateway.service.j2"
SERVER_BIND = '[{"host": "127.0.0.1", "port": 15001}]'


def render(tmp_path, kind):
    gateways = tmp_path / "gateways"
    (gateways / "gw-001").mkdir(parents=True)
    (gateways / "gateway-build.js").write_text("")
    unit = {"name": "gw-001", "argv": ["/usr/bin/python3", str(gateways / "gateway_standin.py"), "--name", "gw-001"],
            "environment": {"SERVER_BIND": SERVER_BIND, "GANYMEDE_FQDN": "127.0.0.1:15000", "GATEWAY_SCRIPTS_DIR": "/tmp",
                            "NODE_EXTRA_CA_CERTS": str(gateways / "platform-api-ca.crt"), "ODD": 'a "quoted" 100% \\ value'},
            "environment_files": [str(gateways / "gw-001" / "secrets.env"), str(gateways / "gw-001" / "identity.env")],
            "log_file": str(tmp_path / "gw-001.log")}
    variables = {"ansible_managed": "Ansible managed", "gateway_standin_env_name": "test-001", "gateway_standin_node": "/bin/sh",
                 "__gateway_standin_dir": str(gateways), "__gateway_standin_kind": kind, "__gateway_standin_unit": unit,
                 "__gateway_standin_program_dir": "/opt/demiurge-gateway", "__gateway_standin_state_root": str(tmp_path)}
    text = Templar(loader=DataLoader(), variables=variables).template(trust_as_template(TEMPLATE.read_text()))
    path = tmp_path / "demiurge-gateway-test-001-gw-001.service"
    path.write_text(text)
    return path, text


@pytest.mark.parametrize("kind", ["build", "stand-in"])
def test_the_unit_parses_and_keeps_secrets_out(tmp_path, kind):
    path, text = render(tmp_path, kind)
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the unit's syntax is not checked (apt-get install systemd)")
    verified = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True, text=True, check=False)
    assert verified.returncode == 0 and verified.stderr == "", verified.stderr
    assert "GATEWAY_TOKEN" not in text and "EnvironmentFile=%s" % (tmp_path / "gateways" / "gw-001" / "secrets.env") in text
    assert "StandardOutput=append:%s" % (tmp_path / "gw-001.log") in text
    if kind == "build":
        assert "BindPaths=%s:/data" % (tmp_path / "gateways" / "gw-001" / "data") in text
        assert "BindPaths=%s:/tmp" % (tmp_path / "gateways" / "gw-001" / "tmp") in text
        # Every environment's state (other gateways, secrets, logs) is out of its view; its program is not.
        assert "InaccessiblePaths=%s" % tmp_path in text
        assert "ExecStart=/bin/sh /opt/demiurge-gateway/gateway-build.js" in text


def test_values_are_quoted_as_systemd_unquotes_them(tmp_path):
    dummy, text = render(tmp_path, "build")
    lines = {line.split("=", 2)[1].lstrip('"'): line for line in text.splitlines() if line.startswith("Environment=")}
    # systemd's rules: inside double quotes, \\ and \" are escapes; % starts a specifier, %% is one %.
    assert lines["SERVER_BIND"] == 'Environment="SERVER_BIND=%s"' % SERVER_BIND.replace('"', '\\"')
    assert lines["ODD"] == 'Environment="ODD=a \\"quoted\\" 100%% \\\\ value"'
