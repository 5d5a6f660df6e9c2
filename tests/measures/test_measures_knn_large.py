"""The n x n path (exact kNN for twonn / mle_id) at n = 20,000: no crash, bounded memory."""

import json
import subprocess
import sys

SCRIPT = """
import json, resource, numpy as np, torch
torch.set_num_threads(2)
from neurometry.measures import run_measures
x = np.random.default_rng(0).normal(size=(20000, 5)) @ np.random.default_rng(1).normal(size=(5, 32))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
r = run_measures(lambda: (x[i:i + 4096] for i in range(0, len(x), 4096)), ["twonn", "mle_id"])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"twonn": r["twonn"].value, "mle_id": r["mle_id"].value, "note": r["twonn"].note,
                  "grew_mib": (after - before) / 1024}))
"""


def test_knn_path_at_20000_rows_bounded_memory():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert 4.0 < res["twonn"] < 6.0 and 4.0 < res["mle_id"] < 6.0
    assert res["note"] == ""  # all 20,000 rows used (max_rows default)
    # a float32 20,000 x 20,000 distance matrix alone would be 1,526 MiB
    assert res["grew_mib"] < 400, res
