"""How strong is the unit stage? Mutation testing of plugins/module_utils/ with cosmic-ray.

Usage (from the repository root, after command 1; it installs cosmic-ray into .build/mutation-venv):
    .venv/bin/python benchmarks/mutation.py [--sample 300] [--seed 1] [--timeout 60]

cosmic-ray makes one small change (a mutant) at a time in a module_utils file, runs the unit tests
and puts the file back. A mutant the tests fail on is killed; one they pass on survived: a change
the unit stage cannot see. The score is killed / (killed + survived). Every mutant of a full run
takes hours on 2 cores, so the report draws a random sample (--sample, --seed) and says so.
It rewrites files in place while it runs: run it on a clean clone, and let it finish.
"""

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".build" / "mutation-venv"
SOURCE_ROOT = REPO / ".build" / "src"


def cosmic_ray():
    if not (VENV / "bin" / "cosmic-ray").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "--timeout", "30", "cosmic-ray==8.7.0"], check=True)
    return str(VENV / "bin" / "cosmic-ray")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=300, help="mutants to run (0: all of them)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60, help="seconds before a mutant's test run counts as killed")
    args = parser.parse_args()

    (SOURCE_ROOT / "ansible_collections" / "demiurge").mkdir(parents=True, exist_ok=True)
    link = SOURCE_ROOT / "ansible_collections" / "demiurge" / "gateway"
    if not link.exists():
        link.symlink_to(REPO)
    tool = cosmic_ray()
    with tempfile.TemporaryDirectory() as tmp:
        config, session = Path(tmp) / "cosmic-ray.toml", Path(tmp) / "session.sqlite"
        # The unit tests run with this very interpreter (the controller's venv), against the files
        # cosmic-ray rewrites, through the ansible_collections link to the repository.
        config.write_text(
            '[cosmic-ray]\nmodule-path = "plugins/module_utils"\ntimeout = %s\nexcluded-modules = []\n'
            'test-command = "env PYTHONPATH=%s %s -m pytest -x -q -p no:cacheprovider tests/unit"\n'
            '[cosmic-ray.distributor]\nname = "local"\n' % (args.timeout, SOURCE_ROOT, sys.executable))
        subprocess.run([tool, "init", str(config), str(session)], cwd=REPO, check=True)
        total = sample_session(session, args.sample, args.seed)
        started = time.monotonic()
        subprocess.run([tool, "exec", str(config), str(session)], cwd=REPO, check=True)
        elapsed = time.monotonic() - started
        dump = subprocess.run([tool, "dump", str(session)], cwd=REPO, check=True, capture_output=True, text=True).stdout
    report(dump, total, args, elapsed)


def sample_session(session, size, seed):
    """Keep `size` random pending mutants; mark the others skipped. Returns how many there were."""
    sys.path.insert(0, str(next((VENV / "lib").glob("python3*/site-packages"))))
    from cosmic_ray.work_db import WorkDB, use_db  # noqa: E402 (cosmic-ray's own venv)
    from cosmic_ray.work_item import WorkerOutcome, WorkResult  # noqa: E402

    with use_db(str(session), WorkDB.Mode.open) as db:
        items = list(db.pending_work_items)
        if size and size < len(items):
            keep = {item.job_id for item in random.Random(seed).sample(items, size)}
            db.set_multiple_results([item.job_id for item in items if item.job_id not in keep],
                                    WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
        return len(items)


def report(dump, total, args, elapsed):
    outcomes, by_file, survivors = Counter(), Counter(), []
    for line in dump.splitlines():
        item, result = json.loads(line)
        if not result or result.get("worker_outcome") == "skipped":
            continue
        verdict = "survived" if result.get("test_outcome") == "survived" else "killed"
        outcomes[verdict] += 1
        mutation = item["mutations"][0]
        path = Path(mutation["module_path"]).name
        by_file[(path, verdict)] += 1
        if verdict == "survived":
            survivors.append("%s:%s %s" % (path, mutation["start_pos"][0], mutation["operator_name"].split("/")[-1]))
    ran = outcomes["killed"] + outcomes["survived"]
    print("Mutation testing of plugins/module_utils/ (cosmic-ray), unit stage as the test suite")
    print("mutants in all: %d; run: %d (random sample, seed %d); %.0f s" % (total, ran, args.seed, elapsed))
    score = 100.0 * outcomes["killed"] / ran if ran else 0
    print("killed %d, survived %d: score %.1f%%" % (outcomes["killed"], outcomes["survived"], score))
    print("\n%-26s %8s %8s %7s" % ("file", "killed", "survived", "score"))
    for path in sorted({path for path, dummy in by_file}):
        killed, survived = by_file[(path, "killed")], by_file[(path, "survived")]
        print("%-26s %8d %8d %6.0f%%" % (path, killed, survived, 100.0 * killed / (killed + survived)))
    print("\nsurvivors (file:line operator):")
    for line in sorted(survivors):
        print("  " + line)


if __name__ == "__main__":
    main()
