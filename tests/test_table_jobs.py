"""`table --jobs`: runs side by side give the numbers each run gives alone with the same thread count,
record that count, and a parallel table killed mid-way resumes to the same table."""
import json
import os
import signal
import subprocess
import sys
import time

from click.testing import CliRunner

from cli import cli
from conftest import ROOT

FLAGS = ["--methods", "ComiRec,BaM", "--seeds", 1, "--max-iters", 40, "--eval-every", 20, "--dim", 16,
         "--seq-len", 10, "--n-negatives", 40, "--batch-size", 32]


def small_data(tmp_path):
    from bam_data.synth import SynthConfig, generate, write
    path = tmp_path / "s.txt"
    write(*generate(SynthConfig(users=300, items=120, topics=6, mean_len=12)), str(path))
    return path


def table(data, out, *extra):
    result = CliRunner().invoke(cli, [str(a) for a in ["table", "--data", data, "--out", out, *FLAGS, *extra]])
    assert result.exit_code == 0, result.output
    return json.loads((out / "table.json").read_text())


def test_run_all_in_parallel_equals_each_run_alone(tmp_path):
    data = small_data(tmp_path)
    alone = table(data, tmp_path / "alone", "--jobs", 1, "--threads", 1)
    side = table(data, tmp_path / "side", "--jobs", 2, "--threads", 1)
    assert side["jobs"] == 2 and alone["jobs"] == 1
    for method in ("ComiRec", "BaM"):
        a, b = alone["runs"][method][0], side["runs"][method][0]
        assert a["test"] == b["test"] and a["best_iter"] == b["best_iter"]
        assert a["threads"] == b["threads"] == 1
        metrics = json.loads((tmp_path / "side" / method / "seed-2021" / "metrics.json").read_text())
        assert metrics["threads"] == 1
    assert "torch threads per run: 1" in (tmp_path / "side" / "table.md").read_text()


def test_run_all_killed_resumes(tmp_path):
    """SIGKILL the table's process while its two workers train: they die with it (no orphan holds a
    run's lock), and the same command finishes to the table of an uninterrupted run."""
    data = small_data(tmp_path)
    flags = [str(a) for a in FLAGS[:6] + ["--max-iters", 200, "--eval-every", 20] + FLAGS[8:]]
    command = [sys.executable, "cli.py", "table", "--data", str(data), "--out", str(tmp_path / "k"), *flags,
               "--jobs", "2", "--threads", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lasts = [tmp_path / "k" / m / "seed-2021" / "last.pt" for m in ("ComiRec", "BaM")]
    deadline = time.time() + 120
    while not all(p.exists() for p in lasts) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    time.sleep(1.0)  # the workers' death signal is delivered; their locks are released by the kernel
    resumed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stdout + resumed.stderr
    whole = table(data, tmp_path / "w", "--jobs", 1, "--threads", 1, "--max-iters", 200)  # one process, in order
    a = json.loads((tmp_path / "k" / "table.json").read_text())["runs"]
    assert {m: r[0]["test"] for m, r in a.items()} == {m: r[0]["test"] for m, r in whole["runs"].items()}


def test_run_all_refuses_to_resume_with_another_thread_count(tmp_path):
    data = small_data(tmp_path)
    table(data, tmp_path / "t", "--threads", 2, "--max-iters", 20)
    result = CliRunner().invoke(cli, [str(a) for a in ["table", "--data", data, "--out", tmp_path / "t", *FLAGS,
                                                        "--threads", 1]])
    assert result.exit_code == 2 and "trained with 2 torch threads" in result.output and "--threads 2" in result.output


def test_run_all_stops_every_worker_on_an_error(tmp_path):
    """A run that fails stops the table at once, with its one line: the other worker's run is not waited for."""
    data = small_data(tmp_path)
    (tmp_path / "t" / "BaM" / "seed-2021").mkdir(parents=True)
    (tmp_path / "t" / "BaM" / "seed-2021" / "last.pt").write_bytes(b"not a checkpoint")
    start = time.time()
    result = CliRunner().invoke(cli, [str(a) for a in ["table", "--data", data, "--out", tmp_path / "t", *FLAGS[:6],
                                                        "--methods", "BaM,ComiRec", "--max-iters", 100000,
                                                        "--eval-every", 1000, *FLAGS[8:], "--jobs", 2, "--threads", 1]])
    assert result.exit_code == 2 and "last.pt" in result.output, result.output
    assert time.time() - start < 60


def test_run_all_names_a_dead_worker_in_one_line(tmp_path):
    """A worker killed from outside (the OOM killer, kill -9) ends the table with one line and exit code 2."""
    data = small_data(tmp_path)
    flags = [str(a) for a in FLAGS[:6] + ["--max-iters", 100000, "--eval-every", 1000] + FLAGS[8:]]
    command = [sys.executable, "cli.py", "table", "--data", str(data), "--out", str(tmp_path / "d"), *flags,
               "--jobs", "2", "--threads", "1"]
    proc = subprocess.Popen(command, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    locks = [tmp_path / "d" / m / "seed-2021" / ".lock" for m in ("ComiRec", "BaM")]
    deadline = time.time() + 120
    while not all(p.exists() and p.read_text() for p in locks) and time.time() < deadline:
        time.sleep(0.2)
    os.kill(int(locks[1].read_text()), signal.SIGKILL)  # the lock file holds its worker's pid
    err = proc.communicate(timeout=120)[1]
    lines = [ln for ln in err.splitlines() if ln.strip() and "runs:" not in ln]
    assert proc.returncode == 2 and "Traceback" not in err, err[-2000:]
    assert lines[-1].startswith("error: ") and "a worker of --jobs 2 died" in lines[-1]
