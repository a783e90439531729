"""The `command` node type: run a program, stream its output, check its artifacts (`node.py`);
the process group it runs in (`process.py`); JSON Schema checks of its artifacts (`artifacts.py`)."""
