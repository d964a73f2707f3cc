"""Shared pytest settings: one seed for the whole run, printed in the header and reusable.

``pytest --seed N`` (or ``NEUROPHASE_SEED=N``) repeats a run exactly; ``--length N``
scales the random transaction counts (quick vs exhaustive).
"""

import os
import random

import pytest


def pytest_addoption(parser):
    parser.addoption("--seed", type=int, default=None, help="random seed for every seeded test")
    parser.addoption("--length", type=int, default=None, help="random transactions per regression")


def _session_seed(config) -> int:
    seed = config.getoption("--seed")
    if seed is None:
        seed = int(os.environ.get("NEUROPHASE_SEED", "0")) or None
    if seed is None:
        seed = getattr(config, "workerinput", {}).get("neurophase_seed")
    if seed is None:
        seed = random.SystemRandom().randrange(1, 2**31)
    return int(seed)


def pytest_configure(config):
    config.neurophase_seed = _session_seed(config)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """xdist: every worker uses the controller's seed."""
    node.workerinput["neurophase_seed"] = node.config.neurophase_seed


def pytest_report_header(config):
    return f"neurophase seed: {config.neurophase_seed} (repeat with --seed {config.neurophase_seed})"


@pytest.fixture
def seed(request) -> int:
    return request.config.neurophase_seed


@pytest.fixture
def length(request):
    """Scale factor for random transaction counts: --length N overrides a test's default."""
    override = request.config.getoption("--length")
    return lambda default: override if override is not None else default


@pytest.fixture
def build_root(tmp_path_factory):
    return tmp_path_factory.mktemp("build")
