"""
bam_numpy imports and runs in a process where importing torch raises: every module, a short
training run, evaluation, weights round trip, and the golden check of a file written here by torch.

    python -m pytest tests/test_numpy_no_torch.py
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BLOCKER = textwrap.dedent("""
    import importlib.abc, sys

    ABOVE = ("torch", "bam_minimal", "bam_runs", "bam_experiments", "bam_crosscheck", "bam_cli", "bam_course", "cli")

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ABOVE:
                raise ImportError(f"blocked: {name} (bam_numpy and bam_data must not import torch, "
                                  "bam_minimal or a package above the twin)")
            return None

    sys.meta_path.insert(0, NoTorch())
    try:
        import torch  # noqa: F401
        raise SystemExit("the blocker does not work")
    except ImportError:
        pass
""")


def run(code, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(BLOCKER + textwrap.dedent(code))
    return subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_bam_numpy_runs_with_torch_blocked(tmp_path):
    from bam_crosscheck import golden_vectors  # the parent may use torch: it writes the golden file
    golden_vectors.write_golden(tmp_path / "golden.npz")
    out = run(f"""
        import numpy as np
        import bam_numpy as bn
        from bam_numpy import config, data, encoders, golden, loss, ranking, training, weights
        from bam_bench import numba_engine  # the numba engine's benchmark is torch-free too
        from bam_data import dataset_stats, files, formats
        from bam_data import synth
        seqs = synth.generate(synth.SynthConfig(users=120, items=80, seed=1))[0]
        d = bn.Dataset(seqs)
        cfg = bn.Config(dim=8, seq_len=12, n_negatives=32, batch_size=16, max_iters=20, eval_every=10)
        params, result = bn.train(cfg, d, np.float64, log=lambda s: None)
        assert result["iters"] == 20 and 0 <= result["test"]["recall@20"] <= 1
        bn.save_weights({str(tmp_path / 'w.npz')!r}, params, cfg, d.n_items)
        back, cfg2, n = bn.load_weights({str(tmp_path / 'w.npz')!r})
        assert cfg2 == cfg and n == d.n_items and all((back[k] == params[k]).all() for k in params)
        mind = bn.Config(model="mind", dim=8, seq_len=12)
        p = bn.init_params(mind, d.n_items, np.random.default_rng(0), np.float32)
        print(bn.evaluate(p, d, "test", mind, k_top=20)[0])
        assert golden.check({str(tmp_path / 'golden.npz')!r}, golden.reference, log=lambda s: None)
        bad = [m for m in sys.modules if m.split(".")[0] in ABOVE]
        assert not bad, bad
        print("ok")
    """, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


def test_command_line_entry_points_with_torch_blocked(tmp_path):
    from bam_crosscheck import golden_vectors
    golden_vectors.write_golden(tmp_path / "golden.npz")
    out = run(f"""
        import runpy
        sys.argv = ["bam_numpy.golden", {str(tmp_path / 'golden.npz')!r}]
        try:
            runpy.run_module("bam_numpy.golden", run_name="__main__")
        except SystemExit as e:
            assert e.code == 0, e.code
        sys.argv = ["bam_numpy", "--synthetic", "--max_iters=4", "--eval_every=2", "--dim=8", "--n_negatives=16"]
        runpy.run_module("bam_numpy", run_name="__main__")
        assert not [m for m in sys.modules if m.split(".")[0] == "torch"]
    """, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "outputs match" in out.stdout and "FAIL" not in out.stdout and "test recall@10" in out.stdout


def test_the_blocker_blocks(tmp_path):
    """The test above can fail: code that imports torch dies under the blocker."""
    out = run("import bam_crosscheck.numpy_engine\n", tmp_path)
    assert out.returncode != 0 and "blocked" in out.stderr
