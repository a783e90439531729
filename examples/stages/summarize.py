"""Stage `summarize` of definitions/examples/stage-graph.json: read the collected modules, answer in JSON.

Its stdout is one JSON object (the node's `output: "json"`), which later nodes read as
`nodes.summarize.parsed`.
"""

import json
import sys
from pathlib import Path

data = json.loads(Path(sys.argv[1]).read_text())
modules = data["modules"]
print(
    json.dumps(
        {
            "environment": data["environment"],
            "modules": len(modules),
            "files": sum(m["files"] for m in modules),
            "names": [m["name"] for m in modules],
        }
    )
)
