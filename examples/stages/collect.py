"""Stage `collect` of definitions/examples/stage-graph.json: list the modules to build, as a JSON artifact.

Writes build/modules.json (checked against modules.schema.json by the command node) and
prints progress to stderr, so stdout stays free for stages that answer in JSON.
"""

import argparse
import json
import sys
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--environment", required=True)
parser.add_argument("--out", default="build/modules.json")
args = parser.parse_args()

modules = [
    {"name": "api", "version": "1.4.2", "files": 12},
    {"name": "worker", "version": "1.4.2", "files": 7},
    {"name": "web", "version": "2.0.0", "files": 31},
]
out = Path(args.out)
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps({"environment": args.environment, "modules": modules}, indent=2))
print(f"collected {len(modules)} modules for {args.environment} into {out}", file=sys.stderr)
