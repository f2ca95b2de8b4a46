"""The layers hold: every module imports on its own, and the light ones stay light.

import-linter (CI) checks the import graph; this checks what it cannot see: the order in
which Python runs imports. Each module is imported first, in a fresh interpreter, so a
cycle hidden behind a package ``__init__`` (a bottom-layer module whose package imports
the top layer) fails here instead of inside a Ray worker.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("ray", "raydp", "pyspark", "py4j", "pyiceberg", "pyarrow", "matplotlib")


def _modules() -> list[str]:
    out = []
    for pkg in ("backfill", "actors", "cluster"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__main__":
                continue
            if parts[-1] == "__init__":
                parts.pop()
            out.append(".".join(parts))
    return out


def test_every_module_imports_first_in_a_fresh_interpreter():
    procs = {m: subprocess.Popen([sys.executable, "-c", f"import {m}"], cwd=ROOT, stderr=subprocess.PIPE,
                                 text=True) for m in _modules()}
    failed = {m: p.communicate()[1].strip().splitlines()[-1:] for m, p in procs.items() if p.wait() != 0}
    assert failed == {}


def test_importing_the_package_and_its_core_loads_no_heavy_dependency():
    code = ("import sys, backfill, backfill.core.plan, backfill.sql.merge, backfill.config; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
