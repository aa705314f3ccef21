"""Makes the simulator package (tests/sim/emsim) importable as `emsim`.

pytest runs with --import-mode=importlib, so test files cannot import each other
or this directory by path; the engine lives in a real package instead, registered
here once under its own name (replay.py, run as a script, finds it on sys.path).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _register() -> None:
    if "emsim" in sys.modules:
        return
    here = Path(__file__).resolve().parent / "emsim"
    spec = importlib.util.spec_from_file_location("emsim", here / "__init__.py",
                                                  submodule_search_locations=[str(here)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["emsim"] = module
    spec.loader.exec_module(module)


_register()
