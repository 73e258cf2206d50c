"""
bam_bench/numba_engine.py: the evaluation benchmark of the numba engine (bench.py calls `run`).

Full-item ranking of every test user with top-20, ComiRec-SA with the default sizes (N=4, d=64,
L=50), a freshly initialised model, on a dataset such as Amazon Beauty (22,363 users, 12,101 items).
It reports the engine's time (numba compiled beforehand, so compile time is not counted), a bare
BLAS matmul of the same FLOPs in the same blocks, and the engine's peak memory measured in fresh
subprocesses for two user counts, which shows that it does not grow with the number of users.

    python -m bam_bench.numba_engine ../shared/data/amazon-beauty-2014/Beauty.txt [--dtype float64]
"""
import json
import os
import subprocess
import sys
import time

import numba
import numpy as np

from bam_bench.measure import peak_mb, reset_peak, rss_mb
from bam_numpy.config import Config
from bam_numpy.data import load_data
from bam_numpy.encoders import init_params
from bam_numpy.ranking import default_block, evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def setup(data_path, dtype):
    data = load_data(data_path)
    cfg = Config()
    params = init_params(cfg, data.n_items, np.random.default_rng(0), np.dtype(dtype))
    evaluate(params, data, "test", cfg, rows=np.arange(min(64, len(data.users))), k_top=20)  # compile
    return data, cfg, params


def bare_matmul_seconds(params, cfg, n_users):
    """(U * N, d) @ (d, I + 1) in the engine's blocks, into one reused buffer: the FLOPs of scoring."""
    item_emb = params["embeddings.weight"]                                    # (I + 1, d)
    block = default_block(cfg, len(item_emb) - 1, item_emb.dtype)
    x = np.random.default_rng(1).standard_normal((block * cfg.n_interests, cfg.dim)).astype(item_emb.dtype)
    out = np.empty((len(x), len(item_emb)), item_emb.dtype)                   # (b * N, I + 1)
    t = time.perf_counter()
    for i in range(0, n_users, block):
        n = min(block, n_users - i) * cfg.n_interests
        np.matmul(x[:n], item_emb.T, out=out[:n])
    return time.perf_counter() - t


def child(data_path, n_users, dtype):
    """Run in a fresh process: evaluate `n_users` test users and print the engine's extra memory: the
    peak RSS during the evaluation minus the RSS before it (the peak is reset just before, by writing
    5 to /proc/self/clear_refs)."""
    data, cfg, params = setup(data_path, dtype)
    rows = np.arange(min(n_users, len(data.users)))
    reset_peak()
    before = rss_mb()
    evaluate(params, data, "test", cfg, rows=rows, k_top=20)
    peak = peak_mb()
    print(json.dumps(dict(users=len(rows), extra_mb=round(peak - before, 1), peak_mb=round(peak, 1))))


def peak_memory(data_path, n_users, dtype):
    cmd = [sys.executable, "-c",
           f"from bam_bench.numba_engine import child; child({str(data_path)!r}, {n_users}, {dtype!r})"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(data_path, dtype="float32", memory_users=(5000, None)):
    """-> dict: eval_users_per_s_numpy, eval_seconds_numpy, numpy_peak_mb (extra memory of the engine
    for all test users), numpy_peak_mb_by_users {users: MB} (the same for fewer users),
    numpy_matmul_seconds and numpy_vs_matmul (engine time / bare numpy matmul of the same FLOPs), and
    the setup; every key but the first two starts with `numpy_`, so that bench.py can merge them."""
    data, cfg, params = setup(data_path, dtype)
    n = len(data.users)
    t = time.perf_counter()
    metrics = evaluate(params, data, "test", cfg, k_top=20)[0]
    seconds = time.perf_counter() - t
    matmul = bare_matmul_seconds(params, cfg, n)
    mem = {}
    if os.path.exists("/proc/self/clear_refs"):
        for users in memory_users:
            m = peak_memory(data_path, users or n, dtype)
            mem[m["users"]] = m["extra_mb"]
    return dict(eval_users_per_s_numpy=n / seconds, eval_seconds_numpy=seconds, numpy_peak_mb=mem.get(n, float("nan")),
                numpy_peak_mb_by_users=mem, numpy_matmul_seconds=matmul, numpy_vs_matmul=seconds / matmul,
                numpy_users=n, numpy_items=data.n_items, numpy_dtype=str(np.dtype(dtype)), numpy_k_top=20,
                numpy_block_users=default_block(cfg, data.n_items, np.dtype(dtype)),
                numpy_threads=numba.get_num_threads(), numpy_threading_layer=numba.threading_layer(),
                numpy_gflop=2 * n * cfg.n_interests * (data.n_items + 1) * cfg.dim / 1e9, numpy_metrics=metrics)

if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    dtype = next((a.partition("=")[2] for a in sys.argv[1:] if a.startswith("--dtype=")), "float32")
    if not args:
        sys.exit(print("usage: python -m bam_bench.numba_engine DATA [--dtype=float64]", file=sys.stderr) or 2)
    print(json.dumps(run(args[0], dtype), indent=2))
