"""torchrun: two gloo processes on the CPU train, evaluate exactly as one process would, and resume
after a kill; with one process every number is as without torchrun. Each run is a real torchrun
(`python -m torch.distributed.run`) on small synthetic data, about ten seconds."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bam_runs import run_folder

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--dim", "32", "--seq-len", "20", "--batch-size", "64", "--n-negatives", "200", "--eval-every", "100",
         "--max-iters", "300"]
ENV = dict(os.environ, OMP_NUM_THREADS="1")  # two processes on two cores: no spinning OpenMP threads


def torchrun(n, *args, background=False):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", "cli.py",
           *map(str, args)]
    if background:
        return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)


def python(*args):
    return subprocess.run([sys.executable, "cli.py", *map(str, args)], cwd=ROOT, env=ENV, capture_output=True,
                          text=True, timeout=300)


def kill_tree(pid):
    """SIGKILL a process and every descendant: torchrun starts its workers in sessions of their own."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo, tree = [pid], []
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def metrics(folder):
    result = json.loads((Path(folder) / "metrics.json").read_text())
    history = [{k: v for k, v in h.items() if k != "seconds"} for h in result["history"]]
    return result["test"], history, result["world_size"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from bam_data.synth import SynthConfig, generate, write
    path = tmp_path_factory.mktemp("ddp") / "small.txt"
    write(*generate(SynthConfig(users=800, items=300, topics=10, mean_len=20, seed=1)), str(path))
    return path


@pytest.fixture(scope="module")
def two(data, tmp_path_factory):
    """A 2-process run, whole."""
    out = tmp_path_factory.mktemp("ddp") / "two"
    result = torchrun(2, "train", "--data", data, "--out", out, *SMALL)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_two_processes_train_and_test_exactly_as_one_evaluates_their_checkpoint(two):
    test, history, world = metrics(two)
    assert world == 2 and len(history) == 3
    single = python("evaluate", "--checkpoint", two / "checkpoint.pt", "--json", two / "one.json")
    assert single.returncode == 0, single.stderr
    assert json.loads((two / "one.json").read_text())["metrics"] == test  # exact: integer ranks, gathered
    assert test["recall@20"] > 0.3  # and it learned (most popular is 0.185 here)


def test_two_processes_evaluate_exactly_as_one(two):
    sharded = torchrun(2, "evaluate", "--checkpoint", two / "checkpoint.pt", "--split", "valid", "--json",
                       two / "two.json")
    assert sharded.returncode == 0, sharded.stderr[-2000:]
    assert python("evaluate", "--checkpoint", two / "checkpoint.pt", "--split", "valid", "--json",
                  two / "one.json").returncode == 0
    read = [json.loads((two / name).read_text())["metrics"] for name in ("two.json", "one.json")]
    assert read[0] == read[1]
    assert sharded.stdout.count("valid (exclude)") == 1  # one process prints


def test_two_processes_evaluate_the_comirec_protocol_exactly_as_one(two):
    """Many targets per user: each process ranks its share of the test users' targets, gathered in user
    order; the per-user files are the same, target by target."""
    args = ["--protocol", "comirec", "--history-mask", "none", "--ndcg-as", "comirec"]
    sharded = torchrun(2, "evaluate", "--checkpoint", two / "checkpoint.pt", *args, "--json", two / "c2.json")
    assert sharded.returncode == 0, sharded.stderr[-2000:]
    assert python("evaluate", "--checkpoint", two / "checkpoint.pt", *args, "--json",
                  two / "c1.json").returncode == 0
    read = [json.loads((two / name).read_text())["metrics"] for name in ("c2.json", "c1.json")]
    assert read[0] == read[1] and "ndcg@50 (comirec-paper)" in read[0] and "ndcg@50 (comirec-master)" in read[0]
    from bam_evidence import per_user
    a, b = (per_user.load(str(two / name)) for name in ("c2.per_user.npz", "c1.per_user.npz"))
    assert np.array_equal(a.ranks, b.ranks) and np.array_equal(a.targets, b.targets) and len(a.ranks) > len(a.users)


def test_one_process_under_torchrun_is_one_process(data, tmp_path):
    assert torchrun(1, "train", "--data", data, "--out", tmp_path / "a", *SMALL).returncode == 0
    assert python("train", "--data", data, "--out", tmp_path / "b", *SMALL).returncode == 0
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")
    assert metrics(tmp_path / "a")[2] == 1


def test_a_run_killed_under_torchrun_resumes_where_it_was(data, two, tmp_path):
    out = tmp_path / "killed"
    run = torchrun(2, "train", "--data", data, "--out", out, *SMALL, background=True)
    try:
        deadline = time.time() + 120
        while not (out / "last.pt").exists() and time.time() < deadline and run.poll() is None:
            time.sleep(0.05)
        assert (out / "last.pt").exists()
    finally:
        kill_tree(run.pid)  # torchrun and both of its processes, as a kill -9 of the job would
        run.wait()
    assert not (out / "metrics.json").exists()
    resumed = torchrun(2, "train", "--data", data, "--out", out, *SMALL)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stdout
    assert metrics(out) == metrics(two)  # every process's generators came back: the same run
    refused = python("train", "--data", data, "--out", out, *SMALL[:-1], "400")
    assert refused.returncode == 2 and "made by 2 processes" in refused.stderr


def test_a_busy_out_is_refused_by_every_process_with_one_line(data, tmp_path):
    """Process 0 takes the lock and tells the others: each prints our one line and exits with 2,
    rather than process 1 training on alone until a collective fails."""
    out = tmp_path / "busy"
    with run_folder.lock(str(out)):
        result = torchrun(2, "train", "--data", data, "--out", out, *SMALL)
    ours = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert len(ours) == 2 and ours[0] == ours[1], result.stderr[-3000:]
    assert f"in use by process {os.getpid()}" in ours[0] and "--out" in ours[0]
    codes = dict(re.findall(r"rank\s*:\s*(\d+) \(local_rank.*\n\s*exitcode\s*:\s*(-?\d+)", result.stderr))
    assert codes == {"0": "2", "1": "2"}, result.stderr[-3000:]  # torchrun's report: exit code 2 from each worker
    assert not (out / "last.pt").exists()


def test_mind_under_two_processes_tests_exactly_as_one_evaluates_its_checkpoint(data, tmp_path):
    """MIND draws routing noise in evaluation: a user's noise must not depend on which process ranks it, so
    the test metrics of a 2-process run (each process ranks half the users) equal one process's evaluation
    of the checkpoint, bit for bit."""
    out = tmp_path / "mind"
    result = torchrun(2, "train", "--data", data, "--out", out, "--model", "mind", *SMALL[:-3], "50",
                      "--max-iters", "100")
    assert result.returncode == 0, result.stderr[-2000:]
    test, history, world = metrics(out)
    assert world == 2 and len(history) == 2
    single = python("evaluate", "--checkpoint", out / "checkpoint.pt", "--json", out / "one.json")
    assert single.returncode == 0, single.stderr
    assert json.loads((out / "one.json").read_text())["metrics"] == test
    assert 0 < test["recall@20"] < 1 and test["ndcg@10"] > 0  # neither all hits nor all misses: ranks matter
