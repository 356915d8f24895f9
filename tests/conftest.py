"""Test-session set-up: parsed workloads are cached in the session's temporary folder, so
no test (nor a command line it runs, which inherits the environment) writes into the
user's cache. XDG_CACHE_HOME points there too, for the processes a test starts with the
harness's own variables taken out of their environment."""

from __future__ import annotations

import os

import pytest

from harness.workloads.cache import CACHE_ENV


@pytest.fixture(scope="session", autouse=True)
def caches_in_a_temporary_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    chosen = {CACHE_ENV: str(folder / "eplb-harness" / "workloads"), "XDG_CACHE_HOME": str(folder)}
    before = {name: os.environ.get(name) for name in chosen}
    os.environ.update(chosen)
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
