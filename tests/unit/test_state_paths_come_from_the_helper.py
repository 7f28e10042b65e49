"""No file under plugins/, roles/ or playbooks/ spells a local state path: they all ask the one helper."""

import re
from pathlib import Path

from ansible_collections.demiurge.gateway.plugins.module_utils import _paths

ROOT = Path(__file__).resolve().parents[2]
# The helper itself, and the filter documentation that must state its default.
EXEMPT = {ROOT / "plugins" / "module_utils" / "_paths.py", ROOT / "plugins" / "filter" / "state_path.yml"}
# The default root, the platform's historical root, and any path built by hand below an env name.
LITERAL_STATE_PATH = re.compile(
    r"%s|\.local-dev|/dev-0\d\d/|LOCAL_DEV_DIR\s*\}\}\s*/" % re.escape(_paths.DEFAULT_LOCAL_DEV_DIR)
)


def scanned_files():
    for top in ("plugins", "roles", "playbooks"):
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and path not in EXEMPT and path.suffix in (".py", ".yml", ".yaml", ".j2", ".cfg", ".conf"):
                yield path


def test_no_literal_state_paths():
    offenders = []
    for path in scanned_files():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if LITERAL_STATE_PATH.search(line):
                offenders.append("%s:%d: %s" % (path.relative_to(ROOT), number, line.strip()))
    assert not offenders, "state paths must come from demiurge.gateway.state_path:\n" + "\n".join(offenders)


def test_the_scan_sees_the_collection():
    names = {path.name for path in scanned_files()}
    assert {"daemon.py", "main.yml", "local_stack.yml", "nginx.conf.j2"} <= names
