"""tools/readme_commands.py as a module (tools/ is a folder of scripts, not a package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent


def readme_tool() -> ModuleType:
    """The README command-list generator, loaded from its file once per process."""
    if "readme_commands" in sys.modules:
        return sys.modules["readme_commands"]
    path = REPO / "tools" / "readme_commands.py"
    spec = importlib.util.spec_from_file_location("readme_commands", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["readme_commands"] = module
    spec.loader.exec_module(module)
    return module
