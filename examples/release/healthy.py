"""Stage `healthy` of definitions/examples/release.json: fail the run when verify found the release down.

A `check` node reports (ok, warning, critical) and does not fail; this gate turns its
verdict into an exit code, so a release that does not come up fails the run and is rolled back.
"""

import sys

status, failed = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ""
if status != "ok":
    print(f"verify: {failed or 'a check'} is {status} after the deploy", file=sys.stderr)
    sys.exit(1)
print("verify: the release is healthy", file=sys.stderr)
