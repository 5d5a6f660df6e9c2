"""keep_freed_heap: memory freed between batches is reused instead of being returned and faulted in again."""

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

CHILD = textwrap.dedent("""
    import resource
    import numpy as np
    from neurometry.memory import keep_freed_heap

    def churn():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(20):
            blocks = [np.ones(2**18, dtype=np.float32) for _ in range(12)]  # 12 x 1 MiB, touched
            del blocks
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    np.ones(2**20, dtype=np.float32)  # a 4 MiB block mapped and freed: glibc's trim threshold becomes 8 MiB
    churn()
    default = churn()
    assert keep_freed_heap() and keep_freed_heap()  # set, and a second call is a no-op that says so
    churn()
    print(default, churn())
""")


def test_freed_heap_is_kept_rather_than_faulted_in_again():
    # a fresh interpreter: the test process's thresholds may already be fixed by an earlier recording
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True).stdout
    default, kept = map(int, out.split())
    # 12 MiB churned 20 times above an 8 MiB threshold: ~3,000 pages faulted each round by default
    assert default > 20 * 2000
    assert kept < 100
