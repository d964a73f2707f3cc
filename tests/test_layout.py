"""The package layout rules of the design brief."""

import pkgutil
import subprocess
import sys

import neurophase.models


def forbidden_imports(names: list, forbidden: tuple) -> str:
    """The forbidden top-level packages loaded by importing ``names`` in a fresh interpreter."""
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {forbidden!r})\n"
        "print(','.join(bad))\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_models_import_neither_amaranth_nor_cocotb():
    """models/ is plain numpy: importing every module of it loads no HDL or simulator package."""
    names = [f"neurophase.models.{m.name}" for m in pkgutil.iter_modules(neurophase.models.__path__)]
    bad = forbidden_imports(names, ("amaranth", "cocotb", "cocotb_tools"))
    assert names and bad == "", f"models/ pulled in: {bad}"


def test_network_flow_imports_no_hdl_no_simulator_and_jax_only_for_training():
    """network/ obeys the models/ rule; JAX is loaded by the training modules (train, hwa) alone."""
    import neurophase.network

    names = [f"neurophase.network.{m.name}" for m in pkgutil.iter_modules(neurophase.network.__path__)
             if m.name not in ("train", "hwa")]
    bad = forbidden_imports(names, ("amaranth", "cocotb", "cocotb_tools", "jax"))
    assert len(names) > 5 and bad == "", f"network/ pulled in: {bad}"
