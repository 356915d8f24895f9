"""The warm zygote's life on the parent's side (its spares and confinement: test_confine)."""

import signal

from harness import confine, sandbox, zygote


def test_a_zygote_started_ahead_and_never_used_is_killed_at_close_not_waited_for():
    # A command that ends before its first evaluation (a bad workload name, say) must not
    # wait at exit for the imports of the zygote it started ahead.
    started = zygote._Zygote(sandbox._environment(1), confine.request())
    started.close()
    assert started.process.returncode == -signal.SIGKILL


def test_a_zygote_started_ahead_serves_once_ready():
    started = zygote._Zygote(sandbox._environment(1), confine.request())
    try:
        started.wait_ready()
        started.wait_ready()  # once: a second call reads nothing more
        assert started.ready and started.confinement in ("namespaces", "process")
    finally:
        started.close()
    assert started.process.returncode == 0  # asked to end, it ended by itself
