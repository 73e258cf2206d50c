"""
The scaling benchmark (`python bench.py --scale`, bam_bench/scale.py) on tiny sizes, and the two peak
memory bounds it is about: evaluation over 200,000 items, and reading an official-format file.

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_scale.py
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bam_minimal as bm
from bam_bench import scale

ROOT = Path(__file__).resolve().parents[1]
linux_only = pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")


def child(code, *args):
    """Run `code` in a fresh Python (one thread) and return its last stdout line, parsed as JSON."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])

# -----------------------------------------------------------------------------
# The benchmark itself


@linux_only
def test_bench_scale_on_tiny_sizes_writes_the_json_the_fit_and_the_plot(tmp_path, capsys):
    out, png = tmp_path / "scale.json", tmp_path / "scale.png"
    sizes = ((300, 200), (600, 400), (300, 400))  # items and interactions vary apart: both memory slopes
    scale.main(["--sizes", ",".join(f"{u}x{i}" for u, i in sizes), "--steps", "2", "--eval-budget", "150000",
                "--threads", "1", "--json", str(out), "--plot", str(png)])
    assert "warning" not in capsys.readouterr().err
    result = json.loads(out.read_text())
    rows = result["measurements"]
    assert [(r["stage"], r["users"], r["items"]) for r in rows] == [
        (s, u, i) for u, i in sizes for s in ("read", "train", "eval")]
    assert all(r["seconds"] > 0 and r["peak_mb"] >= r["before_mb"] > 0 and r["threads"] == 1 for r in rows)
    ev = [r for r in rows if r["stage"] == "eval"]
    assert [(r["eval_users"], r["sampled"]) for r in ev] == [(300, False), (375, True), (300, False)]  # 150,000 // 400
    assert [r["interactions"] for r in rows[::3]] == [int(scale.synthetic(u, i)[0].sum()) for u, i in sizes]

    fit, n, d = result["fit"], result["config"]["n_interests"], result["config"]["dim"]
    c = fit["eval_seconds_per_madd"]
    x = [r["eval_users"] * n * (r["items"] + 1) * d for r in ev]
    assert c == pytest.approx(sum(a * r["seconds"] for a, r in zip(x, ev)) / sum(a * a for a in x))
    assert fit["eval_ratio_measured_to_fit"] == [round(r["seconds"] / (c * a), 3) for a, r in zip(x, ev)]
    taobao = next(p for p in result["projections"] if p["name"].startswith("Taobao"))
    assert taobao["eval_seconds"] == pytest.approx(c * 976_779 * n * 1_708_531 * d)
    # peak memory = a + b items + c interactions, by least squares (three sizes: exact here)
    for stage in ("eval", "train"):
        m, st = fit[f"{stage}_peak_mb"], [r for r in rows if r["stage"] == stage]
        a, b, c = np.linalg.lstsq(np.array([[1, r["items"], r["interactions"]] for r in st], float),
                                  np.array([r["peak_mb"] for r in st]), rcond=None)[0]
        assert (m["intercept"], m["per_item_bytes"], m["per_interaction_bytes"]) == pytest.approx(
            (a, b * 2 ** 20, c * 2 ** 20))
        assert taobao[f"{stage}_peak_mb"] == pytest.approx(a + b * 1_708_530 + c * 85_384_110)
    assert fit["warning"] is None and None not in taobao.values()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@linux_only
def test_bench_scale_on_one_size_warns_and_leaves_out_what_it_cannot_fit(tmp_path, capsys):
    """One size: no slope in items or interactions, so no peak-memory, step-time or reading-memory
    projection (they came out as 0 B/item lines from one point); evaluation and reading time, one
    constant each, remain."""
    out, png = tmp_path / "one.json", tmp_path / "one.png"
    scale.main(["--sizes", "300x200", "--steps", "2", "--threads", "1", "--json", str(out), "--plot", str(png)])
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: these sizes have one item count (200) and one "
                                               "interaction count"), err
    result = json.loads(out.read_text())
    fit = result["fit"]
    assert fit["warning"] == err[0][len("warning: "):]
    for stage in ("eval", "train"):
        assert fit[f"{stage}_peak_mb"]["per_item_bytes"] is None
        assert fit[f"{stage}_peak_mb"]["per_interaction_bytes"] is None
    assert fit["read_extra_mb"]["per_interaction_bytes"] is None
    for p in result["projections"]:
        assert p["eval_peak_mb"] is p["train_peak_mb"] is p["train_step_ms"] is p["read_extra_mb"] is None
        assert p["eval_seconds"] > 0 and p["read_seconds"] > 0
    assert "| n/a | n/a | n/a |" in scale.markdown(result)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_memory_terms_need_sizes_that_move_them_apart():
    def rows(*sizes):
        return [dict(items=i, interactions=t) for i, t in sizes]
    assert scale.fittable(rows((10, 100), (20, 100), (10, 300))) == (["items", "interactions"], None)
    assert scale.fittable(rows((10, 100), (10, 300))) == (["interactions"], "one item count (10)")
    assert scale.fittable(rows((10, 100), (20, 100))) == (["items"], "one interaction count (100)")
    terms, why = scale.fittable(rows((10, 100), (20, 205)))  # two sizes on a line: cannot be told apart
    assert terms == [] and why.startswith("items and interactions that grow together")


def test_bench_py_hands_scale_to_bam_bench_scale():
    out = subprocess.run([sys.executable, "bench.py", "--scale", "--help"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("usage: bench.py --scale") and "--eval-budget" in out


def test_sizes_are_parsed_and_bad_ones_refused():
    assert scale.parse_sizes("10000x5000, 20x3") == [(10000, 5000), (20, 3)]
    for bad in ("10000", "0x5", "ax3", ""):
        with pytest.raises(Exception, match="USERSxITEMS"):
            scale.parse_sizes(bad)


def test_evaluation_samples_users_only_past_the_budget():
    assert scale.eval_rows(100, 1000, 100_000) is None
    rows = scale.eval_rows(1000, 1000, 100_000)
    assert len(rows) == 100 and len(set(rows.tolist())) == 100 and list(rows) == sorted(rows)

# -----------------------------------------------------------------------------
# Evaluation's memory is bounded by its block, not by the users


EVAL_200K = """
import json, sys, torch
import bam_minimal as bm
from bam_bench import measure, scale
users, items = int(sys.argv[1]), int(sys.argv[2])
data = scale.array_dataset(*scale.synthetic(users, items), items)
cfg = bm.Config(device="cpu")  # d = 64, N = 4
model = bm.build_model(cfg, items).eval()
measure.reset_peak()
before = measure.rss_mb()
bm.evaluate(bm.model_scorer(model), data, "test", cfg)
print(json.dumps(dict(before=before, extra=measure.peak_mb() - before, users=len(data.users), items=data.n_items)))
"""


@linux_only
def test_evaluation_of_200k_items_stays_under_three_block_budgets():
    """300 users x 200,000 items, d = 64, N = 4 (MB = 2^20 bytes). evaluate's CPU budget is 2^24 scores,
    64 MB, per block, so a block has b = max(16, 2^24 // (4 x 200,001)) = 20 users: its (b, N, I + 1)
    float32 scores are 61 MB, the (b, I + 1) best scores and target_rank's sign tensor 15 MB each: 92 MB
    alive at once. The bound, 3 x 64 = 192 MB above the RSS before the call, leaves the allocator the rest.
    Measured: 130 to 146 MB in 6 runs; one block of all 300 users: 1,170 MB. As bam_minimal.py runs alone:
    with cli.py's keep_freed_memory, the heap sometimes holds a second block (147 to 237 MB in 5 runs).
    The peak is VmHWM, reset before the call: a child's ru_maxrss would start at pytest's own RSS."""
    m = child(EVAL_200K, 300, 200_000)
    assert (m["users"], m["items"]) == (300, 200_000)
    assert 60 < scale.block_scores_mb(bm.Config(), 200_000) <= 64
    assert m["extra"] < 192, m

# -----------------------------------------------------------------------------
# Reading an official file holds its result, not the file's text


READ_OFFICIAL = """
import json, sys
from bam_data import formats
from bam_bench.measure import peak_mb, reset_peak, rss_mb
path = sys.argv[1]
reset_peak()
before = rss_mb()
seqs = formats.read_official(path)
print(json.dumps(dict(extra=peak_mb() - before, kept=rss_mb() - before, interactions=sum(map(len, seqs.values())))))
"""


@linux_only
def test_reading_an_official_file_peaks_near_its_result(tmp_path):
    """read_official held the whole text, decoded, and a string per line: 144 bytes per interaction at
    the peak for an 11-byte line (50,000 users, 500,000 lines), for a result of 70. Now it reads line
    by line and shares one int per id: about 35 at the peak. Bound: 64 bytes per interaction, room for
    the result (a list slot of 8 bytes, lists and a dict entry per user) and its growth, none for the text."""
    path = tmp_path / "big.txt"
    scale.write_official(str(path), *scale.synthetic(50_000, 10_000, mean_len=10))
    m = child(READ_OFFICIAL, path)
    per_interaction = m["extra"] * 2 ** 20 / m["interactions"]
    assert m["interactions"] > 400_000
    assert per_interaction < 64, m


def test_the_gpu_check_agrees_with_itself_on_the_cpu():
    """bam_bench.gpu's agreement step, CPU against CPU (what --dry-run does): MIND's routing logits went
    into the new `gen` argument and the check crashed before it timed anything."""
    import numpy as np
    import torch

    import bam_minimal as bm
    from bam_bench import gpu
    rng = np.random.default_rng(0)
    data = bm.Dataset({u: list(rng.integers(1, 60, 12)) for u in range(1, 41)})
    for model in ("comirec", "mind"):
        errors = gpu.agreement(data, model, torch.float64, "cpu")
        assert errors and max(errors.values()) == 0, (model, errors)
