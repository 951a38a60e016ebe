"""Report libraries only for reports: run, profile and validate work where plotly and kaleido
cannot be imported (a bare GPU node), and import them only once a report is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A finder ahead of every other that refuses plotly and kaleido, as on a node without them.
BLOCK = """\
import sys
from importlib.abc import MetaPathFinder


class Block(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("plotly", "kaleido"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None


sys.meta_path.insert(0, Block())
"""


def _halbench_without_plotly(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    code = BLOCK + "from halbench.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_the_blocking_finder_blocks_plotly(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", BLOCK + "import plotly"], capture_output=True, text=True
    )
    assert done.returncode != 0 and "blocked" in done.stderr


def test_run_no_report_and_validate_work_without_plotly(tmp_path):
    suite = str(ROOT / "suites" / "smoke.yaml")
    out = tmp_path / "run"
    done = _halbench_without_plotly(
        "run", suite, "--no-ray", "--no-report", "-o", str(out), cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "trials.parquet").is_file() and not (out / "report.md").exists()
    done = _halbench_without_plotly("validate", suite, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]


def test_profile_no_report_works_without_plotly(tmp_path):
    out = tmp_path / "profile"
    args = ["profile", "--losses", "hal,nca", "--batch-sizes", "8", "--dims", "4"]
    args += ["--classes", "4", "--repeats", "2", "--warmup", "1", "--no-ray", "--no-report"]
    done = _halbench_without_plotly(*args, "-o", str(out), cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "profile.parquet").is_file()


@pytest.mark.parametrize("command", ["run", "profile", "validate"])
def test_the_command_modules_import_no_report_library(command):
    """What `halbench <command>` imports before it works: the cli and the command's modules."""
    modules = {
        "run": "halbench.run.runner",
        "profile": "halbench.run.profile",
        "validate": "halbench.run.cluster",
    }
    code = (
        f"import sys, halbench.cli, {modules[command]}\n"
        "halbench.cli.build_parser()\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('plotly', 'kaleido')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
