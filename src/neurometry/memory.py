"""How the process's C heap gives memory back, for recording loops that free and reallocate the same
buffers batch after batch.

glibc returns the top of its heap to the kernel whenever more than ``M_TRIM_THRESHOLD`` lies free there.
That threshold follows the largest block freed so far (twice it, from 128 KiB up to 64 MiB), so after
a 4 MiB buffer is freed it sits at 8 MiB, and a forward pass whose activations and copies peak a few
MiB above that gives its pages back at every batch and faults them in again at the next: measured on
the grokking lab's series (profiling with getrusage), most of the kernel time per checkpoint and the
difference between recording and plain forward passes. Fixing the thresholds keeps the pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 2**20  # blocks this large or larger are mapped on their own (glibc's own dynamic maximum)
TRIM_THRESHOLD = 128 * 2**20  # free memory kept at the top of the heap before any is given back

_lock = threading.Lock()
_done = False


def keep_freed_heap() -> bool:
    """Fix glibc's trim and mmap thresholds for this process (once; later calls do nothing), so memory freed
    between batches is reused rather than returned and faulted in again. At most
    :data:`TRIM_THRESHOLD` bytes of free heap stay with the process. Returns whether the thresholds are set
    (False off glibc, e.g. macOS or musl, where nothing is changed)."""
    global _done
    with _lock:
        if _done:
            return True
        if not sys.platform.startswith("linux"):
            return False
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            return False
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        return _done
