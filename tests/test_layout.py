"""The package layout rules of the design brief."""

import pkgutil
import subprocess
import sys

import neurophase.models


def test_models_import_neither_amaranth_nor_cocotb():
    """models/ is plain numpy: importing every module of it loads no HDL or simulator package."""
    names = [f"neurophase.models.{m.name}" for m in pkgutil.iter_modules(neurophase.models.__path__)]
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('amaranth', 'cocotb', 'cocotb_tools'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert names and out.stdout.strip() == "", f"models/ pulled in: {out.stdout.strip()}"
