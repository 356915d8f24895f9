"""Test-session set-up: parsed workloads are cached in the session's temporary folder, so
no test (nor a command line it runs, which inherits the environment) writes into the
user's cache."""

from __future__ import annotations

import os

import pytest

from harness.workloads.cache import CACHE_ENV


@pytest.fixture(scope="session", autouse=True)
def workload_cache_in_a_temporary_folder(tmp_path_factory):
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("workload-cache"))
    yield
    if before is None:
        del os.environ[CACHE_ENV]
    else:
        os.environ[CACHE_ENV] = before
