"""Screenshot a Prefect UI page after clicking one button, through headless Chromium's DevTools protocol.

Used for docs/ui-approval-paused.png (the Resume dialog needs a click; a plain
`chromium --screenshot` cannot click). Run: ./dev python docs/ui-runs/click_shot.py URL OUT.png [BUTTON]
"""

import base64
import json
import subprocess
import sys
import tempfile
import time
import urllib.request

from websockets.sync.client import connect

PORT = 47499  # DevTools port on 127.0.0.1


def page_socket() -> str:
    """The first page target's websocket URL, once Chromium listens (bounded wait)."""
    for _ in range(50):
        try:
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{PORT}/json", timeout=2))
            return next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        except (OSError, StopIteration):
            time.sleep(0.2)
    raise SystemExit("chromium did not open its DevTools port")


def main(url: str, out: str, button: str | None = None) -> None:
    profile = tempfile.mkdtemp(prefix="click-shot-")
    args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    args += [f"--user-data-dir={profile}", f"--remote-debugging-port={PORT}", "about:blank"]
    browser = subprocess.Popen(["chromium", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ws = connect(page_socket(), max_size=None)
        counter = iter(range(1, 10_000))

        def call(method: str, **params):
            n = next(counter)
            ws.send(json.dumps({"id": n, "method": method, "params": params}))
            for _ in range(1000):
                msg = json.loads(ws.recv(timeout=30))
                if msg.get("id") == n:
                    return msg.get("result", {})
            raise SystemExit(f"no answer to {method}")

        call("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False)
        call("Page.navigate", url=url)
        time.sleep(6)  # the UI loads and polls the API
        if button:
            js = (
                "(() => { const b = [...document.querySelectorAll('button')]"
                f".find(b => b.innerText.trim() === {json.dumps(button)});"
                " if (!b) return 'no such button'; b.click(); return 'clicked'; })()"
            )
            print(call("Runtime.evaluate", expression=js, returnByValue=True)["result"].get("value"))
            time.sleep(3)
        with open(out, "wb") as f:
            f.write(base64.b64decode(call("Page.captureScreenshot", format="png")["data"]))
        print("wrote", out)
    finally:
        browser.terminate()
        browser.wait(timeout=10)


if __name__ == "__main__":
    main(*sys.argv[1:4])
