"""Everything `neurophase generate` writes is lint-clean and recorded in the manifest.

The chip block (144 tile instances by default) has its own tests, small and full size, in
tests/test_chip_generate.py; here every other block of the default configuration."""

import hashlib
import json

import pytest

from neurophase.config import ChipConfig
from neurophase.cosim.runner import LINT_WAIVERS, lint_verilog
from neurophase.generate import BLOCKS, generate


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("rtl")
    return out, generate(ChipConfig(), out, [name for name in BLOCKS if name != "chip"])


def test_manifest_hashes_match_the_files(generated):
    out, manifest = generated
    assert json.loads((out / "manifest.json").read_text()) == manifest
    for entry in manifest["files"]:
        assert hashlib.sha256((out / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]


def test_every_generated_module_is_lint_clean(generated):
    out, manifest = generated
    modules = [entry for entry in manifest["files"] if entry["kind"] == "verilog"]
    assert modules
    for entry in modules:
        clean, output = lint_verilog([out / entry["path"], *(out / p for p in entry.get("uses", []))],
                                     entry["module"])
        assert clean, f"{entry['path']}:\n{output}"


def test_lint_waivers_are_documented():
    doc = open("docs/lint.md").read()
    for name in LINT_WAIVERS:
        assert f"`{name}`" in doc
