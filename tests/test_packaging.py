"""The wheel a user installs (`pip install .`) carries the shipped definitions, and finds them.

A checkout has definitions/ beside the packages; an installed wheel does not, so it
carries them in flows/shipped/ (pyproject's force-include) and `pipeline list` reads
them from there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.name for p in (ROOT / "definitions").glob("*.json"))

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH (./dev installs it): cannot build the wheel")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([uv, "build", "--wheel", "-o", str(out), "-q", str(ROOT)], check=True, timeout=240)
    (built,) = out.glob("opsflow-*.whl")
    return built


def test_the_wheel_carries_the_definitions_the_deployments_and_the_crash_automation(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"flows/shipped/definitions/{name}" for name in SHIPPED} <= names
    assert {"flows/shipped/prefect.yaml", "deployments/crashed-runs.json"} <= names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt")))
    assert b"pipeline = deployments.cli:main" in entry_points


def test_an_installed_wheel_lists_and_validates_its_shipped_definitions(wheel: Path, tmp_path: Path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {k: v for k, v in os.environ.items() if k != "OPSFLOW_DEFINITIONS_DIR"}
    env["PYTHONPATH"] = str(site)  # ahead of the checkout's editable install
    elsewhere = tmp_path / "elsewhere"  # no definitions/ in the working directory either
    elsewhere.mkdir()
    probe = "import flows.definition as d; print(d.PROJECT_DEFINITIONS)"
    found = subprocess.run(
        [sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60
    )
    assert found.stdout.strip() == str(site / "flows" / "shipped" / "definitions"), found.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "deployments.cli", "validate"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    for name in SHIPPED:
        if name != "schema.json":
            assert f"✓ {name.removesuffix('.json')} (" in listed.stdout, listed.stdout
