"""Stages `deploy` and `rollback` of definitions/examples/release.json: put a release live, or take it back.

The target directory stands for the servers: `release.json` is what is live, `health` is
what its health endpoint answers (served over HTTP, verify requests it). A deploy keeps
the release it replaces as `release.previous.json`; `--rollback` puts that one back.
`--simulate-failure unhealthy` deploys a release that does not come up (no `health`).
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--target", required=True)
parser.add_argument("--release", default="build/release.json")
parser.add_argument("--simulate-failure", choices=["none", "unhealthy"], default="none")
parser.add_argument("--rollback", action="store_true", help="put the previous release back")
args = parser.parse_args()
target = Path(args.target)
live, previous, health = target / "release.json", target / "release.previous.json", target / "health"


def version(path: Path) -> str | None:
    return json.loads(path.read_text())["version"] if path.exists() else None


if args.rollback:
    back_to = version(previous)
    if back_to is None:  # nothing was live before: take the release down
        live.unlink(missing_ok=True)
        health.unlink(missing_ok=True)
    else:
        previous.replace(live)
        health.write_text("ok\n")
    print(f"rolled back to {back_to or 'nothing'}", file=sys.stderr)
    print(json.dumps({"rolled_back_to": back_to}))
    sys.exit(0)

target.mkdir(parents=True, exist_ok=True)
replaced = version(live)
if replaced is not None:
    live.replace(previous)
shutil.copyfile(args.release, live)
if args.simulate_failure == "unhealthy":
    health.unlink(missing_ok=True)  # the new release never comes up
else:
    health.write_text("ok\n")
print(f"deployed {version(live)} to {target} (replacing {replaced or 'nothing'})", file=sys.stderr)
print(json.dumps({"deployed": version(live), "replaced": replaced}))
