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


def test_network_flow_imports_no_hdl_no_simulator_and_jax_only_for_training():
    """network/ obeys the models/ rule; JAX is loaded by the training modules (train, hwa) alone."""
    import neurophase.network

    names = [f"neurophase.network.{m.name}" for m in pkgutil.iter_modules(neurophase.network.__path__)
             if m.name not in ("train", "hwa")]
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('amaranth', 'cocotb', 'cocotb_tools', 'jax'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert len(names) > 5 and out.stdout.strip() == "", f"network/ pulled in: {out.stdout.strip()}"
