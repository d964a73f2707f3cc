"""Everything `neurophase generate` writes is lint-clean and recorded in the manifest."""

import hashlib
import json

import pytest

from neurophase.config import ChipConfig
from neurophase.cosim.runner import LINT_WAIVERS, lint_verilog
from neurophase.generate import generate


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("rtl")
    return out, generate(ChipConfig(), out)


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
        clean, output = lint_verilog([out / entry["path"]], entry["module"])
        assert clean, f"{entry['path']}:\n{output}"


def test_lint_waivers_are_documented():
    doc = open("docs/lint.md").read()
    for name in LINT_WAIVERS:
        assert f"`{name}`" in doc
