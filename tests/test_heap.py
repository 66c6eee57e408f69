"""The API's allocator settings take effect on this platform's C library."""

from __future__ import annotations

import platform

import pytest

from taskdrive import heap
from taskdrive.settings import MiB


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_accepts_the_settings_that_keep_cycled_memory() -> None:
    # Refused values would leave glibc's defaults (and a warning in the API's log).
    assert heap.keep_cycled_memory(192 * MiB)
