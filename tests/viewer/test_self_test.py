"""The self-test's native-kernel check, from source (the frozen build runs it in tests/packaging)."""

from __future__ import annotations

from engine.fast import native
from medsr_viewer.self_test import OK, SKIPPED, run_checks


def _native_row(checks):
    return next(c for c in checks if c.name == "native kernels")


def test_self_test_reports_the_native_kernels_in_use_and_the_torch_fallback():
    if native.library() is None:
        native.build()
    row = _native_row(run_checks({"sample", "native"}, crop=64, show_ms=0))
    assert row.status == OK and "in use" in row.detail, row
    with native.switched_off():
        row = _native_row(run_checks({"sample", "native"}, crop=64, show_ms=0))
    assert row.status == SKIPPED and "torch path" in row.detail, row
