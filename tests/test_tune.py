"""`cli.py tune` (bam_tune): workers sharing a study, a dead worker's trial retried, pruning, the grid figure, bad
search spaces and refused studies in one line (exit 2), and no test metric read before the study ends."""
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from cli import cli
from conftest import ROOT

FLAGS = ["--max-iters", 60, "--eval-every", 20, "--dim", 16, "--seq-len", 10, "--n-negatives", 40,
         "--batch-size", 32, "--threads", 1]
SPACE = ["--space", "tau=log:0.1:10", "--space", "n_interests=choice:2,4"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from bam_data.synth import SynthConfig, generate, write
    path = tmp_path_factory.mktemp("tune") / "s.txt"
    write(*generate(SynthConfig(users=300, items=120, topics=6, mean_len=12)), str(path))
    return path


def args(data, out, *extra, flags=FLAGS, space=SPACE):
    return [str(a) for a in ["tune", "--data", data, "--out", out, *space, *flags, *extra]]


def tune(*argv):
    return CliRunner().invoke(cli, list(argv))


def worker(argv):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "cli.py", *argv], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def trials(out, name=None):
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    storage = JournalStorage(JournalFileBackend(str(out / "journal.log")))
    return optuna.load_study(study_name=name or out.name, storage=storage).get_trials()


def test_two_workers_share_a_study_and_run_each_trial_once(data, tmp_path):
    out = tmp_path / "shared"
    procs = [worker(args(data, out, "--trials", 6)) for _ in range(2)]
    logs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    done = [t for t in trials(out) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert 6 <= len(done) <= 7 and not [t for t in trials(out) if t.state == TrialState.FAIL]  # 7: both asked last
    ends = [line for log in logs for line in log.splitlines() if ": validation recall@10" in line or "pruned" in line]
    numbers = [line.split("trial ")[-1].split(":")[0] for line in ends]
    assert sorted(numbers) == sorted(set(numbers)) and len(numbers) == len(done)   # each trial run by one worker
    assert not any("resuming" in log or "reused" in log for log in logs)


def test_a_killed_worker_leaves_a_failed_trial_that_another_retries(data, tmp_path):
    out = tmp_path / "killed"
    long = ["--max-iters", 200, "--patience", 50] + FLAGS[2:]
    a = worker(args(data, out, "--trials", 2, flags=long))
    state = out / "trials" / "BaM" / "trial-0000" / "last.pt"
    deadline = time.time() + 60
    while not state.exists() and time.time() < deadline and a.poll() is None:
        time.sleep(0.02)
    a.send_signal(signal.SIGKILL)   # mid-trial: after its first validation
    a.communicate()
    assert state.exists()
    result = tune(*args(data, out, "--trials", 2, flags=long))
    assert result.exit_code == 0, result.output
    assert "trial 0: its worker died; marked failed and queued again" in result.output
    assert "resuming" in result.output                      # the retry goes on from the killed trial's last.pt
    got = trials(out)
    assert got[0].state == TrialState.FAIL
    retried = [t for t in got if t.system_attrs.get("failed_trial") == 0]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE and retried[0].params == got[0].params
    assert len([t for t in got if t.state == TrialState.COMPLETE]) == 2
    status = tune("tune", "--status", "--out", str(out))
    assert status.exit_code == 0 and "FAIL" in status.output and "(retry of 0)" in status.output


def test_a_pruned_trial_stops_early(data, tmp_path):
    import bam_minimal as bm
    from bam_runs import datasets
    from bam_tune import space, study
    base = study.method_config(bm.Config(max_iters=100, eval_every=20, dim=16, seq_len=10, n_negatives=40,
                                         batch_size=32), "BaM")
    knobs = space.parse(["lr=choice:0.05,1e-7"], None, base)
    spec = study.Spec(base, "BaM", knobs, datasets.load_dataset(str(data)), str(tmp_path / "pruned"), trials=3,
                      prune_after=2, threads=1)
    s = study.open_study(spec)
    for lr in (0.05, 0.05, 1e-7):
        s.enqueue_trial({"lr": lr})
    got = study.work(spec, log=lambda line: None).get_trials()
    assert [t.state for t in got] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    assert got[2].user_attrs["validations"] < 100 // 20 == got[0].user_attrs["validations"]
    assert not (tmp_path / "pruned" / "trials" / "BaM" / "trial-0002" / "trial.json").exists()


def test_the_grid_figure(data, tmp_path):
    out = tmp_path / "grid"
    result = tune(*args(data, out, "--grid", "--seeds", 2, "--against", "hard", flags=["--max-iters", 40] + FLAGS[2:],
                        space=["--space", "tau=choice:0.5,2"]))
    assert result.exit_code == 0, result.output
    assert (out / "grid.png").stat().st_size > 5000
    got = trials(out, out.name)
    assert sorted((t.params["tau"], t.params["seed"]) for t in got) == [(0.5, 2021), (0.5, 2022), (2.0, 2021),
                                                                         (2.0, 2022)]
    # hard selection ignores tau (its argmax is the same at every temperature): one trial per seed, not per tau
    hard = trials(out, out.name + ".hard")
    assert sorted(t.params["seed"] for t in hard) == [2021, 2022] and all("tau" not in t.params for t in hard)


@pytest.mark.parametrize("spec, says", [
    ("nope=log:1:2", "not a Config field"), ("tau=log:", "LOW:HIGH"), ("tau=float:2:1", "empty range"),
    ("tau=float:-1:1", "cannot be negative"), ("lr=log:0:0.1", "bounds above 0"), ("tau=gauss:0:1", "unknown distr"),
    ("n_interests=choice:", "empty choice"), ("selection=choice:hard", "set by the method"),
    ("n_interests=float:1:4", "integer"), ("tau", "no `=`")])
def test_bad_search_spaces_give_one_line_and_exit_2(data, tmp_path, spec, says):
    result = tune(*args(data, tmp_path / "bad", space=["--space", spec]))
    assert result.exit_code == 2 and says in result.output, result.output
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "bad" / "trials").exists()


def test_a_study_refuses_other_data_space_or_method_and_repeats_itself(data, tmp_path):
    out = tmp_path / "trust"
    first = tune(*args(data, out, "--trials", 3))
    assert first.exit_code == 0, first.output
    again = tune(*args(data, tmp_path / "again", "--trials", 3))   # same seed and threads: the same trials
    assert [(t.params, t.value) for t in trials(out)] == [(t.params, t.value) for t in trials(tmp_path / "again")]
    other = tmp_path / "other.txt"
    other.write_text("".join(line for i, line in enumerate(open(data)) if i % 50))
    for argv, says in [(args(data, out, space=["--space", "tau=log:0.1:5"]), "another search space"),
                       (args(other, out), "other data"),
                       (args(data, out, "--method", "BaM-l"), "tunes another method"),
                       (args(data, out, flags=["--max-iters", 80] + FLAGS[2:]), "another base config")]:
        result = tune(*argv)
        assert result.exit_code == 2 and says in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    assert again.exit_code == 0


def test_no_test_metric_is_read_before_the_study_ends(data, tmp_path, monkeypatch):
    import bam_minimal as bm
    from bam_evidence import per_user
    from bam_experiments import single_run
    from bam_tune import study
    single_run.register()
    phase = {"now": "study"}
    evaluate, load, final = bm.PROTOCOLS["loo"]["evaluate"], per_user.load, study.final

    def guarded_evaluate(scorer, data, split, cfg, *a, **k):
        assert not (split == "test" and phase["now"] == "study"), "a test metric computed during the study"
        return evaluate(scorer, data, split, cfg, *a, **k)

    def guarded_load(path):
        assert phase["now"] != "study", f"{path} read during the study"
        return load(path)

    def final_step(*a, **k):
        phase["now"] = "final"
        return final(*a, **k)
    monkeypatch.setitem(bm.PROTOCOLS["loo"], "evaluate", guarded_evaluate)
    monkeypatch.setattr(per_user, "load", guarded_load)
    monkeypatch.setattr(study, "final", final_step)
    out = tmp_path / "final"
    result = tune(*args(data, out, "--trials", 2, "--final-seeds", 2))
    assert result.exit_code == 0, result.output
    assert phase["now"] == "final"
    text = (out / "final.md").read_text()
    assert "BaM tuned - BaM default" in text and "primary 95% interval" in text
    assert (out / "trials" / "BaM" / "trial-0000" / "per_user_valid.npz").exists()
    assert not (out / "trials" / "BaM" / "trial-0000" / "per_user_test.npz").exists()


def test_against_hard_drops_the_knobs_hard_selection_ignores(data):
    """HARD_IGNORES rests on a fact of bam_minimal: hard selection trains the same model at every tau. Checked here,
    so that a change that makes hard read tau fails this test instead of silently skipping its search."""
    from dataclasses import replace

    import torch

    import bam_minimal as bm
    from bam_runs.datasets import load_dataset
    from bam_tune import study
    ds = load_dataset(str(data))
    cfg = bm.Config(selection="hard", max_iters=20, eval_every=20, dim=16, seq_len=10, n_negatives=40, batch_size=32,
                    device="cpu")
    torch.set_num_threads(1)
    a, b = (bm.train(replace(cfg, tau=t), ds, log=lambda s: None)[0].state_dict() for t in (0.1, 10.0))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert set(study.HARD_IGNORES) <= set(bm.Config.__dataclass_fields__)


def test_the_final_runs_of_a_grid_start_from_its_trials_and_equal_fresh_runs(data, tmp_path):
    """A grid trains every point over the final seeds: `final` resumes those trials to test them (adopt) instead of
    training again, and gets what a run trained from scratch gets. Its runs are then kept as evidence (report pack)
    and `report` writes their verdicts (before and after tuning) and the grid's table and figure from that file."""
    import json

    from bam_evidence import report
    out = tmp_path / "adopt"
    tiny = ["--max-iters", 40] + FLAGS[2:]
    result = tune(*args(data, out, "--grid", "--seeds", 2, "--final-seeds", 2, "--against", "hard", flags=tiny,
                        space=["--space", "tau=choice:1.0,2.0"]))
    assert result.exit_code == 0, result.output
    assert result.output.count("resumed there to test it") == 8       # 4 arms x 2 seeds, every one a grid point
    adopted = json.loads((out / "final" / "BaM-default" / "seed-2021" / "metrics.json").read_text())
    fresh = tmp_path / "fresh"
    got = CliRunner().invoke(cli, [str(a) for a in ["train", "--data", data, "--out", fresh, *tiny[:-2]]])
    assert got.exit_code == 0, got.output
    assert json.loads((fresh / "metrics.json").read_text())["test"] == adopted["test"]

    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (root / "README.md").write_text("")
    (root / "docs" / "results.md").write_text("<!-- report:tiny-tune -->\n<!-- /report:tiny-tune -->\n")
    packed = CliRunner().invoke(cli, ["report", "pack", str(out / "final"), "--name", "tiny-tune", "--out",
                                      str(root / "docs" / "evidence" / "tiny-tune.npz")])
    assert packed.exit_code == 0, packed.output
    drew = []
    assert report.write(str(root), n_resamples=99, on_rows=lambda name, rows, ev: drew.append(ev.table["kind"])) == []
    page = (root / "docs" / "results.md").read_text()
    for want in ("BaM-tuned - BaM-default", "BaM-default - ComiRec-default", "BaM-tuned - ComiRec-tuned",
                 "| adopt | 1 | 2 |", "| adopt.hard | - | 2 |", "grid-tiny-tune.png", "BaM: 4 trials, median"):
        assert want in page, want
    assert drew == ["tune"]


def test_a_grid_chooses_the_point_with_the_best_mean_over_seeds_not_the_best_trial():
    from optuna.distributions import CategoricalDistribution as C

    from bam_tune import study
    st = optuna.create_study(direction="maximize")
    dists = dict(tau=C([0.1, 1.0]), seed=C([1, 2]))
    for tau, seed, value in ((0.1, 1, 0.30), (0.1, 2, 0.01), (1.0, 1, 0.20), (1.0, 2, 0.19)):  # 0.1: one lucky seed
        st.add_trial(optuna.create_trial(params=dict(tau=tau, seed=seed), distributions=dists, value=value))
    spec = study.Spec(None, "BaM", {}, None, "x", grid=True)
    params, best = study.best_params(spec, st)
    assert params == {"tau": 1.0} and best.value == pytest.approx(0.195) and best.number == 2
    assert study.best_params(study.Spec(None, "BaM", {}, None, "x"), st)[0] == {"tau": 0.1}   # a search: the trial
