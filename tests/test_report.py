"""
tests/test_report.py: the kept evidence (bam_evidence.kept) and the generated report (bam_evidence.report): the
blocks of docs/results.md and README.md equal what `cli.py report` computes from docs/evidence/, a hand edit
of a generated number is caught, and evidence that disagrees with itself or mixes code versions is refused or
named.

    python -m pytest tests/test_report.py
"""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

import cli
from bam_data.formats import InputError
from bam_evidence import kept, metrics, per_user, report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ["recall@10", "ndcg@10", "recall@20", "ndcg@20"]


def fake_table(root, methods=("ComiRec", "BaM", "REMI"), seeds=(2021, 2022, 2023), users=300, n_items=500,
               codes=None):
    """A `cli.py table` folder without training: per-user files of random ranks (REMI's better, BaM's in
    between), each run's metrics.json and table.json, as the real ones are laid out."""
    rng = np.random.default_rng(0)
    targets = rng.integers(1, n_items + 1, users)                              # (U,)
    table = dict(dataset="fake.txt", seeds=len(seeds), runs={}, beyond={}, config=dict(protocol="loo"))
    for i, method in enumerate(methods):
        for j, seed in enumerate(seeds):
            folder = os.path.join(root, method, f"seed-{seed}")
            os.makedirs(folder)
            ranks = rng.geometric(0.02 + 0.01 * i, users) - 1                  # (U,) method i ranks better
            values = metrics.recompute(NAMES, ranks, np.ones(users, np.int64), targets)
            per_user.save(os.path.join(folder, per_user.FILE), users=np.arange(1, users + 1), targets=targets,
                          ranks=ranks, metrics=values, protocol="loo", split="test", history_mask="exclude",
                          fingerprint="v2:" + "0" * 32, n_items=n_items)
            code = (codes or {}).get((method, seed), dict(commit="a" * 40, dirty=False, mixed=False))
            result = dict(config=dict(seed=seed, protocol="loo"), test={k: float(v.mean()) for k, v in values.items()},
                          best_iter=1000 * (j + 1), iters=2000 * (j + 1), seconds=60.0 + j, threads=1, code=code,
                          finished=True)
            with open(os.path.join(folder, "metrics.json"), "w") as f:
                json.dump(result, f)
            table["runs"].setdefault(method, []).append(dict(seed=seed))
    with open(os.path.join(root, "table.json"), "w") as f:
        json.dump(table, f)
    return root


def page_with_block(root, name):
    """docs/results.md with the blocks of table `name`, summary and paper; README.md with the readme block."""
    def block(n):
        return f"<!-- report:{n} -->\n<!-- /report:{n} -->\n"
    pages = {report.PAGES[0]: "# prose\n\n" + block(name) + block("summary") + block("paper"),
             report.PAGES[1]: "# readme\n\n" + block("readme")}
    for page, text in pages.items():
        os.makedirs(os.path.join(root, os.path.dirname(page) or "."), exist_ok=True)
        with open(os.path.join(root, page), "w") as f:
            f.write(text)


# -----------------------------------------------------------------------------
# The pages of this checkout


def test_report_blocks_equal_the_committed_evidence():
    """docs/results.md's and README.md's generated blocks are what `cli.py report` computes from docs/evidence."""
    evidence = os.path.join(REPO, report.EVIDENCE)
    if not any(f.endswith(".npz") for f in os.listdir(evidence)):
        pytest.fail("no kept evidence in docs/evidence")
    assert report.write(REPO, check=True) == []


# -----------------------------------------------------------------------------
# Pack, load, write, check


def test_pack_load_and_write_then_catch_a_hand_edit(tmp_path):
    table = fake_table(str(tmp_path / "t"))
    out = kept.pack(table, str(tmp_path / "docs" / "evidence" / "fake.npz"), "fake", "python cli.py table ...")
    evidence = kept.load(out)
    assert {m: len(r) for m, r in evidence.runs.items()} == {"ComiRec": 3, "BaM": 3, "REMI": 3}
    page_with_block(str(tmp_path), "fake")
    assert report.write(str(tmp_path), check=True) != []                     # empty blocks: not the evidence's
    assert report.write(str(tmp_path), n_resamples=999) == []
    assert report.write(str(tmp_path), check=True, n_resamples=999) == []
    text = (tmp_path / "docs" / "results.md").read_text()
    assert "| BaM - REMI | nDCG@10 |" in text and "BaM ahead" in text and "| fake | leave-one-out | 3 |" in text
    # a number edited by hand inside a block is caught
    mean = f"{evidence.runs['BaM'][0].metrics['recall@20'].mean():.4f}"
    edited = text.replace("| BaM | ", "| BaM | 9", 1)
    (tmp_path / "docs" / "results.md").write_text(edited)
    problems = report.write(str(tmp_path), check=True, n_resamples=999)
    assert problems and "docs/results.md" in problems[0] and mean


def test_cli_report_check_exits_1_on_a_difference(tmp_path):
    table = fake_table(str(tmp_path / "t"))
    runner = CliRunner()
    got = runner.invoke(cli.cli, ["report", "pack", table, "--name", "fake", "--out",
                                  str(tmp_path / "docs" / "evidence" / "fake.npz")])
    assert got.exit_code == 0, got.output
    page_with_block(str(tmp_path), "fake")
    got = runner.invoke(cli.cli, ["report", "--check", "--root", str(tmp_path)])
    assert got.exit_code == 1 and "differ" in got.output


def test_a_block_without_evidence_and_evidence_without_a_block_are_named(tmp_path):
    kept.pack(fake_table(str(tmp_path / "t")), str(tmp_path / "docs" / "evidence" / "fake.npz"), "fake")
    page_with_block(str(tmp_path), "gone")
    problems = report.write(str(tmp_path), check=True, n_resamples=999)
    assert any("`gone` has no evidence" in p for p in problems)
    assert any("block `fake` (docs/evidence/fake.npz): no page shows it" in p for p in problems)


# -----------------------------------------------------------------------------
# Evidence that cannot disagree with itself, or mix code versions silently


def test_kept_load_refuses_ranks_that_do_not_give_the_recorded_metrics(tmp_path):
    out = kept.pack(fake_table(str(tmp_path / "t")), str(tmp_path / "e.npz"), "fake")
    with np.load(out, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["ranks"] = np.maximum(arrays["ranks"] - 5, 0).astype(np.int32)     # "improved" ranks, metrics kept
    np.savez_compressed(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InputError, match="its ranks give"):
        kept.load(str(tmp_path / "bad.npz"))


def test_kept_load_refuses_a_file_that_is_not_one(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not an evidence file"):
        kept.load(str(tmp_path / "x.npz"))


def test_runs_of_different_commits_are_named(tmp_path):
    other = {("BaM", 2022): dict(commit="b" * 40, dirty=True, mixed=False)}
    out = kept.pack(fake_table(str(tmp_path / "t"), codes=other), str(tmp_path / "e.npz"), "fake")
    evidence = kept.load(out)
    assert evidence.codes() == ["aaaaaaa", "bbbbbbb+changes"]
    assert "trained by different code" in report.runs_sentence(evidence)
    one = kept.load(kept.pack(fake_table(str(tmp_path / "u")), str(tmp_path / "f.npz"), "fake"))
    assert "all trained at commit aaaaaaa" in report.runs_sentence(one)


def test_a_run_resumed_under_other_code_is_labelled_with_each(tmp_path):
    """A run trained at one commit and resumed at another (tune's final runs: trained as a trial, resumed only to be
    tested) is named by both: its `code` alone is the last stretch's, which trained nothing."""
    first, last = dict(commit="a" * 40, dirty=False), dict(commit="c" * 40, dirty=False)
    assert kept.code_label(dict(last, mixed=True), [first, last]) == "aaaaaaa then ccccccc"
    assert kept.code_label(dict(last, mixed=False), None) == "ccccccc"
    evidence = kept.Evidence("e", {}, [dict(method="BaM", code=dict(last, mixed=True), code_history=[first, last])])
    assert evidence.codes() == ["aaaaaaa then ccccccc"]
    assert "all trained at commit aaaaaaa, resumed at commit ccccccc" in report.runs_sentence(evidence)


def test_compare_over_seeds_names_mixed_code(tmp_path):
    other = {("BaM", 2022): dict(commit="b" * 40, dirty=False, mixed=False)}
    table = fake_table(str(tmp_path / "t"), codes=other)
    got = CliRunner().invoke(cli.cli, ["compare", os.path.join(table, "ComiRec"), os.path.join(table, "BaM"),
                                       "--resamples", "199"])
    assert got.exit_code == 0, got.output
    assert "seeds 2021, 2022, 2023" in got.output and "different code (aaaaaaa, bbbbbbb)" in got.output
    assert "primary 95% interval" in got.output and "p (Holm)" in got.output


def test_code_note_names_a_resumed_run_by_each_commit(tmp_path):
    """`table` and `compare` name a run resumed under other code by every commit that trained it, as the kept evidence
    does: a tune trial started as a table run (trained at one commit, only tested at the next) is not "trained at" the
    commit that tested it."""
    from bam_evidence import records
    from bam_experiments import table as table_mod
    root = fake_table(str(tmp_path / "t"))
    first, last = dict(commit="a" * 40, dirty=False), dict(commit="c" * 40, dirty=False)
    path = os.path.join(root, "BaM", "seed-2021", "metrics.json")
    with open(path) as f:
        result = json.load(f)
    result.update(code=dict(last, mixed=True), code_history=[first, last])
    with open(path, "w") as f:
        json.dump(result, f)
    results = {m: [records.read_result(os.path.join(root, m, f"seed-{s}", "metrics.json")) for s in (2021, 2022, 2023)]
               for m in ("ComiRec", "BaM")}
    assert "aaaaaaa then ccccccc" in table_mod.code_note(results)
    got = CliRunner().invoke(cli.cli, ["compare", os.path.join(root, "ComiRec"), os.path.join(root, "BaM"),
                                       "--resamples", "199"])
    assert got.exit_code == 0, got.output
    assert "different code (aaaaaaa, aaaaaaa then ccccccc)" in got.output
