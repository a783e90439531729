"""Stages `build` and `remove_build` of definitions/examples/release.json: make the release, or undo it.

`--out build/release.json` writes the release manifest (checked against release.schema.json
by the command node); `--clean` removes it again, the compensation of a failed run.
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--version")
parser.add_argument("--out", default="build/release.json")
parser.add_argument("--clean", action="store_true", help="remove what a build made")
args = parser.parse_args()
out = Path(args.out)

if args.clean:
    existed = out.exists()
    out.unlink(missing_ok=True)
    print(f"{'removed' if existed else 'nothing to remove at'} {out}", file=sys.stderr)
    sys.exit(0)

files = {"app.py": f"VERSION = {args.version!r}\n", "config.json": '{"workers": 4}\n'}
manifest = {
    "name": "shop",
    "version": args.version,
    "files": [{"path": p, "sha256": hashlib.sha256(c.encode()).hexdigest()} for p, c in files.items()],
}
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(manifest, indent=2))
print(f"built shop {args.version} ({len(files)} files) into {out}", file=sys.stderr)
