"""Giving freed memory back to the OS (glibc's ``malloc_trim``; a no-op elsewhere)."""

from __future__ import annotations

import ctypes
from collections.abc import Callable


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; absent from musl and other platforms
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _find_malloc_trim()


def release_free_heap() -> None:
    """Hand the free pages of the heap back to the OS.

    Large temporaries (a domain list's parse tables) raise glibc's dynamic mmap threshold, so
    later large blocks land on the brk heap, where free() returns nothing that is not at its
    top; with a 1M-entry list that is tens of MB of RSS that only ``malloc_trim`` releases.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
