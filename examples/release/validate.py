"""Stage `validate` of definitions/examples/release.json: refuse a release that is not `X.Y.Z`.

Answers in JSON on stdout (the node's `parsed`); says why on stderr and exits 2 otherwise.
"""

import argparse
import json
import re
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--version", required=True)
parser.add_argument("--environment", required=True)
args = parser.parse_args()

if not re.fullmatch(r"\d+\.\d+\.\d+", args.version):
    print(f"version {args.version!r} is not X.Y.Z (e.g. 1.2.0)", file=sys.stderr)
    sys.exit(2)
print(json.dumps({"version": args.version, "environment": args.environment}))
