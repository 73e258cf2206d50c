"""Trust: released checkpoints load, a NaN never scores, no file runs code, two runs never mix, and
every bad file or flag is one line with exit code 2. Each test reproduces a defect found on the code
before it (issue "Trust"), so each one failed there."""
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import bam_minimal as bm
from bam_runs import checkpoints
from bam_runs import run_folder
from test_cli import TINY, one_line_error, run

ROOT = Path(__file__).resolve().parents[1]



@pytest.fixture
def trained(tmp_path, good):
    """A finished run folder of a tiny ComiRec-SA + BaM."""
    out = tmp_path / "run"
    assert run("train", "--data", good, "--out", out, *TINY).exit_code == 0
    return out

# -----------------------------------------------------------------------------
# 1. The authors' released checkpoints load


def official_file(path, cfg, n_items, seed=0):
    """A model.pt as the official code saves one: model.state_dict() of a model whose sampled-softmax
    module (registered before saving) adds logprob_noise and the alias sampler's prob and alias."""
    torch.manual_seed(seed)
    model = bm.build_model(cfg, n_items)
    sd = dict(model.state_dict())
    uniform = torch.full((n_items + 1,), 1.0 / (n_items + 1))
    sd["sample_loss.logprob_noise"] = uniform.log()
    sd["sample_loss.alias.prob"] = torch.ones(n_items + 1)
    sd["sample_loss.alias.alias"] = torch.zeros(n_items + 1, dtype=torch.long)
    torch.save(sd, path)
    return model


@pytest.mark.parametrize("cfg", [bm.Config(dim=16, n_interests=2, seq_len=10),
                                 bm.Config(dim=16, n_interests=2, seq_len=10, selection="bam-l", linear_size=4),
                                 bm.Config(model="mind", dim=16)])
def test_an_official_model_pt_with_the_sampler_buffers_loads(tmp_path, good, cfg):
    model = official_file(tmp_path / "model.pt", cfg, 40)
    net, got, n_items, info = checkpoints.load(str(tmp_path / "model.pt"))
    assert n_items == 40 and got.model == cfg.model
    assert got.selection == ("bam-l" if cfg.selection == "bam-l" else "bam")
    assert any("sample_loss.logprob_noise" in n and "sample_loss.alias.alias" in n for n in info["notes"])
    history = torch.randint(1, 41, (5, got.seq_len))
    mask = torch.ones(5, got.seq_len)
    routing = torch.randn(5, got.n_interests, got.seq_len)
    assert torch.equal(net(history, mask, routing=routing)[0], model.eval()(history, mask, routing=routing)[0])
    result = run("evaluate", "--checkpoint", tmp_path / "model.pt", "--data", good)
    assert result.exit_code == 0, result.output
    assert "note: ignored the official sampler's buffers" in result.output and "recall@20" in result.output
    if cfg.model == "comirec" and cfg.selection == "bam":
        for args in (["export", "--checkpoint", tmp_path / "model.pt", "--out", tmp_path / "w.npz"],
                     ["balance", "--checkpoint", tmp_path / "model.pt", "--data", good, "--out", tmp_path / "b.png"]):
            result = run(*args)
            assert result.exit_code == 0, result.output

# -----------------------------------------------------------------------------
# 2. A NaN never scores


def test_nan_and_infinite_scores_never_rank_a_target_first():
    scores = torch.tensor([[0.0, 1.0, 2.0, float("nan")],
                           [0.0, float("nan"), 1.0, 2.0],
                           [0.0, float("inf"), 1.0, 0.5],
                           [0.0, 1.0, float("-inf"), float("nan")]])
    target = torch.tensor([3, 1, 1, 1])
    ranks = bm.target_rank(scores, target).tolist()
    assert ranks[0] == 4 and ranks[1] == 4 and ranks[2] == 4  # a non-finite target is never a hit
    assert ranks[3] == 1  # another item's NaN ranks above a finite target (never helps it); -inf (the mask) below
    scores = torch.tensor([[float("nan"), float("inf"), 0.5, 1.0]])
    assert bm.top_k(scores, 3).tolist() == [[0, 1, 3]]  # NaN and +inf first, as one value: lower id first
    assert bm.target_rank(scores.clone(), torch.tensor([2])).tolist() == [3]


def test_training_stops_at_the_first_non_finite_loss(tmp_path, good):
    out = tmp_path / "run"
    result = run("train", "--data", good, "--out", out, *TINY, "--lr", "1e20")
    line = one_line_error(result, "iteration", "lower --lr", after_progress=True, code=3)  # a failed run: not 2
    assert "nan" in line or "inf" in line
    assert not (out / "metrics.json").exists()


@pytest.mark.parametrize("engine", ["torch", "numpy"])
def test_a_checkpoint_with_nan_weights_is_refused(trained, good, engine):
    obj = torch.load(trained / "checkpoint.pt", weights_only=True)
    obj["model"]["embeddings.weight"][3, 0] = float("nan")
    obj["checksum"] = run_folder.checksum(obj["model"])  # a consistent file: the NaN came from training
    torch.save(obj, trained / "nan.pt")
    one_line_error(run("evaluate", "--checkpoint", trained / "nan.pt", "--engine", engine), "not all finite",
                   "embeddings.weight")

# -----------------------------------------------------------------------------
# 3. Opening a file never runs code from it


class Plant:
    """Unpickling this calls os.system: it would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_no_command_runs_code_from_a_planted_pickle(tmp_path, good, trained):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    torch.save({"embeddings.weight": torch.zeros(41, 16), "payload": Plant(marker)}, evil)
    with open(tmp_path / "raw.pt", "wb") as f:
        pickle.dump({"model": Plant(marker)}, f)
    for path in (evil, tmp_path / "raw.pt"):
        for args in (["evaluate", "--checkpoint", path, "--data", good],
                     ["evaluate", "--checkpoint", path, "--data", good, "--engine", "numpy"],
                     ["export", "--checkpoint", path, "--out", tmp_path / "w.npz"],
                     ["crosscheck", "--checkpoint", path, "--data", good],
                     ["balance", "--checkpoint", path, "--data", good, "--out", tmp_path / "b.png"]):
            one_line_error(run(*args), str(path))
    torch.save({"model": Plant(marker)}, trained / "last.pt")
    os.remove(trained / "metrics.json")
    one_line_error(run("train", "--data", good, "--out", trained, *TINY), "last.pt", "code")
    assert not marker.exists()

# -----------------------------------------------------------------------------
# 4. Two runs on one folder never mix


def test_a_second_train_on_a_locked_folder_stops_at_once(tmp_path, good):
    out = tmp_path / "run"
    with run_folder.lock(str(out)):
        t0 = time.time()
        line = one_line_error(run("train", "--data", good, "--out", out, *TINY), str(out), str(os.getpid()))
        assert "in use by process" in line and time.time() - t0 < 10
    assert not (out / "metrics.json").exists()
    assert run("train", "--data", good, "--out", out, *TINY).exit_code == 0  # released: the folder is usable


def test_the_lock_is_released_by_kill_9(tmp_path):
    out = tmp_path / "run"
    code = (f"from bam_runs import run_folder; import time\nwith run_folder.lock({str(out)!r}):\n"
            " print('held', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(bm.InputError, match=f"in use by process {child.pid}"):
            with run_folder.lock(str(out)):
                pass
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with run_folder.lock(str(out)):
        pass

# -----------------------------------------------------------------------------
# 5. The data fingerprint tells datasets apart


def test_the_fingerprint_is_a_hash_not_a_weighted_sum(tmp_path, good, trained):
    seqs = bm.read_official(str(good))
    a = bm.Dataset(seqs)
    user = min(seqs)
    changed = dict(seqs)
    changed[user] = [seqs[user][0] + 2, seqs[user][1] - 1] + seqs[user][2:]  # kept the old weighted sum equal
    assert run_folder.fingerprint(a) != run_folder.fingerprint(bm.Dataset(changed))
    other = tmp_path / "other.txt"
    other.write_text("".join(f"{u} {i}\n" for u, s in changed.items() for i in s))
    one_line_error(run("train", "--data", other, "--out", trained, *TINY), "other data")

# -----------------------------------------------------------------------------
# 6, 7. One line instead of a traceback


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated"])
def test_a_damaged_last_pt_is_one_line(tmp_path, good, trained, content):
    (trained / "last.pt").write_bytes(content)
    os.remove(trained / "metrics.json")
    one_line_error(run("train", "--data", good, "--out", trained, *TINY), "last.pt", "--fresh")


def test_a_truncated_last_pt_is_one_line(good, trained):
    data = (trained / "last.pt").read_bytes()
    (trained / "last.pt").write_bytes(data[:len(data) // 2])
    os.remove(trained / "metrics.json")
    one_line_error(run("train", "--data", good, "--out", trained, *TINY), "last.pt")


@pytest.mark.parametrize("content", ["", '{"test": {"recall@10": 0.5', "[]", '{"finished": true}'])
def test_a_damaged_metrics_json_is_one_line(good, trained, content):
    (trained / "metrics.json").write_text(content)
    one_line_error(run("train", "--data", good, "--out", trained, *TINY), "metrics.json")


@pytest.mark.parametrize("flag", [["--lr", "nan"], ["--lr", "inf"], ["--tau", "nan"], ["--tau", "inf"],
                                  ["--tau", "1e300"], ["--tau-hard", "nan"], ["--weight-decay", "nan"]])
def test_non_finite_or_huge_options_are_one_line(tmp_path, good, flag):
    one_line_error(run("train", "--data", good, "--out", tmp_path / "r", *TINY, *flag), flag[0][2:].replace("-", "_"))
    with pytest.raises(bm.InputError):
        bm.check_config(bm.Config(**{flag[0][2:].replace("-", "_"): float(flag[1])}))


def test_an_item_id_near_2_to_the_31_is_one_line_before_any_allocation(tmp_path):
    path = tmp_path / "sparse.txt"
    path.write_text("".join(f"{u} {i}\n" for u in range(1, 6) for i in (1, 2, 3, 2**31 - 5)))
    line = one_line_error(run("train", "--data", path, "--out", tmp_path / "r", *TINY), "sparse.txt", "distinct")
    assert "remap" in line
    result = run("data", "remap", path, "--out", tmp_path / "dense.txt")
    assert result.exit_code == 0, result.output
    assert max(max(s) for s in bm.read_official(str(tmp_path / "dense.txt")).values()) == 4

# -----------------------------------------------------------------------------
# 8. One long history does not blow up evaluation's memory


PEAK = """
import sys, numpy as np, torch
import bam_minimal as bm
long_user = sys.argv[1] == "1"
rng = np.random.default_rng(0)
seqs = {u: list(rng.integers(1, 501, 20)) for u in range(2000)}
if long_user:
    seqs[2000] = list(rng.integers(1, 501, 100_000))
data = bm.Dataset(seqs, n_items=500)
torch.manual_seed(0)
model = bm.build_model(bm.Config(dim=16, device="cpu"), 500).eval()
with open("/proc/self/clear_refs", "w") as f:  # the peak from here on, not the parent's (fork keeps it)
    f.write("5")
bm.evaluate(bm.model_scorer(model), data, "test", bm.Config(dim=16, device="cpu"))
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")))
"""


def test_evaluation_memory_does_not_depend_on_the_longest_history():
    """2,001 users, one with 100,000 interactions: the old blocks padded every user to that length
    (7.6 GB at peak against 0.37 GB without that user). The peak is the evaluation's own (VmHWM after
    a reset), so that a large parent process cannot hide it."""
    peaks = [int(subprocess.run([sys.executable, "-c", PEAK, flag], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout) for flag in ("0", "1")]
    assert peaks[1] < 1.5 * peaks[0], peaks

# -----------------------------------------------------------------------------
# 9. Smaller ones


def test_stale_temporary_files_are_cleaned_when_a_run_folder_opens(tmp_path, good):
    out = tmp_path / "run"
    out.mkdir()
    stale, fresh = out / ".tmp-dead", out / ".tmp-new"
    stale.write_bytes(b"half a checkpoint")
    fresh.write_bytes(b"another process is writing this one")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    with run_folder.lock(str(out)):
        pass
    assert not stale.exists() and fresh.exists()


def test_lowering_max_iters_on_a_finished_run_is_one_line(good, trained):
    line = one_line_error(run("train", "--data", good, "--out", trained, *TINY[:-4], "--max-iters", "20",
                              "--eval-every", "20"), "--max-iters")
    assert "40" in line
    assert json.loads((trained / "metrics.json").read_text())["iters"] == 40


def test_a_checkpoint_argument_may_name_the_run_folder(tmp_path, good, trained):
    assert run("evaluate", "--checkpoint", trained, "--data", good).exit_code == 0
    (tmp_path / "empty").mkdir()
    one_line_error(run("evaluate", "--checkpoint", tmp_path / "empty"), "is a folder", "checkpoint.pt")


def test_a_garbled_checkpoint_is_refused(tmp_path, trained):
    """torch checks no CRC: a flipped byte in the tensor data loaded silently and gave wrong numbers."""
    original = torch.load(trained / "checkpoint.pt", weights_only=True)["model"]["embeddings.weight"]
    data = bytearray((trained / "checkpoint.pt").read_bytes())
    at = bytes(data).find(original.numpy().tobytes()[:64])
    assert at > 0
    data[at + 5] ^= 0xFF
    (tmp_path / "flipped.pt").write_bytes(bytes(data))
    one_line_error(run("evaluate", "--checkpoint", tmp_path / "flipped.pt"), "flipped.pt", "checksum")


def test_a_folder_that_cannot_be_written_is_found_before_training(tmp_path, good, monkeypatch):
    """The lock file is the first thing written: a read-only --out fails there, not at the first
    checkpoint minutes later (root ignores file modes, so the refusal is simulated)."""
    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).endswith(".lock"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)
    monkeypatch.setattr(os, "open", read_only)
    t0 = time.time()
    one_line_error(run("train", "--data", good, "--out", tmp_path / "ro", *TINY), "Permission denied")
    assert time.time() - t0 < 5

# -----------------------------------------------------------------------------
# Found in review: each of these failed before its fix


class FakeGroup:
    """torch.distributed as one process of a group sees it, for a run in this process: `rank` of
    `size`, with collectives that leave their inputs as they are."""

    def __init__(self, rank):
        self.rank = rank

    def is_initialized(self):
        return True

    def get_rank(self):
        return self.rank

    def get_world_size(self):
        return 1

    def all_reduce(self, tensor):
        return tensor

    def broadcast_object_list(self, objs):
        return objs


def first_negatives(monkeypatch, synthetic_small, rank):
    """The first negatives that process `rank` draws (None: without torchrun)."""
    if rank is not None:
        monkeypatch.setattr(bm, "dist", FakeGroup(rank))
    drawn = []
    real = bm.train_step

    def spy(model, opt, cfg, data, rng, gen, tau, device):
        real(model, opt, cfg, data, rng, gen, tau, device)
        drawn.append(torch.randint(0, data.n_items + 1, (8,), generator=gen).tolist())
        raise KeyboardInterrupt  # one step is enough
    monkeypatch.setattr(bm, "train_step", spy)
    cfg = bm.Config(dim=8, seq_len=10, batch_size=8, n_negatives=16, max_iters=5, device="cpu")
    with pytest.raises(KeyboardInterrupt):
        bm.train(cfg, bm.Dataset(synthetic_small[0]), log=lambda s: None)
    monkeypatch.undo()
    return drawn[0]


def test_every_process_draws_its_own_negatives(monkeypatch, synthetic_small):
    """torch's CPU generator keeps only 32 bits of a seed: seed + rank * 2^32 gave every process the
    same negatives and BaM draws."""
    alone, zero, one, two = (first_negatives(monkeypatch, synthetic_small, r) for r in (None, 0, 1, 2))
    assert zero == alone  # process 0 is a single process
    assert len({tuple(zero), tuple(one), tuple(two)}) == 3


def test_crafted_checkpoints_are_one_line(tmp_path, trained):
    obj = torch.load(trained / "checkpoint.pt", weights_only=True)
    for name, change in (("tau_str", lambda o: o["config"].update(tau="1.0")),
                         ("dim_float", lambda o: o["config"].update(dim=8.5)),
                         ("weights_list", lambda o: o.update(model=[1, 2]))):
        crafted = json.loads(json.dumps({k: v for k, v in obj.items() if k != "model"}))
        crafted["model"] = dict(obj["model"])
        change(crafted)
        torch.save(crafted, tmp_path / f"{name}.pt")
        one_line_error(run("evaluate", "--checkpoint", tmp_path / f"{name}.pt"), f"{name}.pt")
    torch.save({"embeddings.weight": torch.zeros(5)}, tmp_path / "flat.pt")
    (tmp_path / "x").write_text("1 2\n1 3\n1 4\n")  # data that is there: the checkpoint is what is wrong
    one_line_error(run("evaluate", "--checkpoint", tmp_path / "flat.pt", "--data", tmp_path / "x"), "not a matrix")


def test_a_last_pt_from_another_device_is_one_line(good, trained):
    saved = torch.load(trained / "last.pt", weights_only=True)
    saved["device"] = "cuda"
    torch.save(saved, trained / "last.pt")
    os.remove(trained / "metrics.json")
    one_line_error(run("train", "--data", good, "--out", trained, *TINY), "made on cuda", "--device cuda")


def test_the_standalone_run_writes_whole_files_in_its_own_folder(tmp_path, good):
    cfg, _, out = bm.parse_args([str(good)])
    assert out.startswith("runs/minimal-")  # not cli.py train's folder, whose metrics carry a fingerprint
    result = subprocess.run([sys.executable, str(ROOT / "bam_minimal.py"), str(good), "--dim=16", "--seq_len=10",
                             "--max_iters=20", "--eval_every=10", "--n_negatives=20", f"--out={tmp_path / 'm'}"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["checkpoint.pt", "metrics.json"]
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["iters"] == 20


def test_top_k_larger_than_the_catalogue(good):
    data = bm.Dataset({u: [1 + (u + j) % 7 for j in range(5)] for u in range(1, 20)})
    torch.manual_seed(0)
    model = bm.build_model(bm.Config(dim=8, seq_len=5), data.n_items).eval()
    _, _, top = bm.evaluate(bm.model_scorer(model), data, "test", bm.Config(dim=8, seq_len=5), k_top=20)
    assert top.shape == (19, 8)


def test_the_twin_stops_at_a_non_finite_loss_and_refuses_nan_weights(tmp_path, synthetic_small):
    import bam_numpy as bn
    data = bn.Dataset(synthetic_small[0])
    cfg = bn.Config(dim=8, seq_len=10, batch_size=16, n_negatives=16, max_iters=200, eval_every=200, lr=1e20)
    with pytest.raises(bn.InputError, match="iteration"), np.errstate(all="ignore"):  # overflow is the point
        bn.train(cfg, data, log=lambda s: None)
    params = bn.init_params(cfg, data.n_items, np.random.default_rng(0))
    params["embeddings.weight"][1, 0] = np.nan
    bn.save_weights(str(tmp_path / "w.npz"), params, cfg, data.n_items)
    with pytest.raises(bn.InputError, match="not all finite"):
        bn.load_weights(str(tmp_path / "w.npz"))
