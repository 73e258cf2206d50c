"""The paper's experiments: prepare (Amazon 2023), the readers, table (Table 2) and balance (Figure 1)."""
import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

import bam_minimal as bm
from bam_data import formats
from bam_experiments import balance
from bam_data import amazon as prepare
from cli import cli
from conftest import shared


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_prepare_amazon2023_gives_the_official_split(tmp_path):
    out = tmp_path / "beauty.txt"
    result = run("prepare", "amazon2023", shared("amazon2023-all-beauty/All_Beauty.csv"), "--out", out)
    assert result.exit_code == 0, result.output
    assert "253" in result.output and "356" in result.output and "2,535" in result.output
    maps = json.loads((tmp_path / "beauty.maps.json").read_text())
    data = bm.Dataset(bm.read_official(out))
    asin, user = maps["items"], maps["users"]
    for split in ("valid", "test"):
        with open(shared(f"amazon2023-all-beauty/last_out_w_his/All_Beauty.{split}.csv")) as f:
            official = {r["user_id"]: (r["parent_asin"], r["history"].split()) for r in csv.DictReader(f)}
        k = bm.split_targets(data, split)
        history, mask, target = bm.windows(data, np.arange(len(data.users)), k, int(k.max()))
        ours = {user[str(u)]: (asin[str(t)], [asin[str(i)] for i in h[m > 0]])
                for u, h, m, t in zip(data.users, history, mask, target)}
        assert ours == official


def test_kcore_by_hand():
    # user 0: items 0,1,2; user 1: items 0,1; user 2: items 0,3. With k=2: item 2 and item 3 go
    # (one interaction each), then user 2 has one left and goes, then item 0 has 2, item 1 has 2.
    users = np.array([0, 0, 0, 1, 1, 2, 2])
    items = np.array([0, 1, 2, 0, 1, 0, 3])
    assert prepare.kcore(users, items, 2).tolist() == [True, True, False, True, True, False, False]
    # the cascade: with k=3 nothing survives
    assert not prepare.kcore(users, items, 3).any()


def test_prepare_sorts_by_time_with_file_order_ties_and_dedups(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user_id,parent_asin,rating,timestamp\n"
                    "u1,B,5,300\nu1,A,5,100\nu1,C,5,300\nu1,A,4,400\nu2,A,5,10\nu2,B,5,20\nu2,C,3,5\n")
    stats, maps = prepare.prepare_amazon2023(path, str(tmp_path / "o.txt"), k=1)
    seqs = bm.read_official(tmp_path / "o.txt")
    names = json.loads(open(maps).read())["items"]
    assert [[names[str(i)] for i in s] for s in seqs.values()] == [["A", "B", "C"], ["C", "A", "B"]]
    assert stats["raw_interactions"] == 7 and stats["after_dedup"] == 6


def test_recbole_reader_sorts_by_user_and_time_with_stable_ties():
    seqs, info = formats.read(shared("ml-100k/ml-100k.inter"))
    assert info["format"] == "recbole" and len(seqs) == 943 and sum(map(len, seqs.values())) == 100000
    # the same order by hand: rows sorted by (user, timestamp), ties in file order
    rows = []
    with open(shared("ml-100k/ml-100k.inter")) as f:
        next(f)
        for n, line in enumerate(f):
            u, i, _, t = line.split("\t")
            rows.append((u, float(t), n, i))
    rows.sort()
    first = [i for u, _, _, i in rows if u == rows[0][0]]
    item_name = {v: k for k, v in info["item_map"].items()}
    user_id = info["user_map"][rows[0][0]]
    assert [item_name[i] for i in seqs[user_id]] == first


def test_office_zero_indexed_per_user_file():
    seqs, info = formats.read(shared("amazon-office-2014/Office_Products.txt"))
    assert info["format"] == "per-user" and len(seqs) == 4905
    data = bm.Dataset(seqs)
    assert data.n_items == 2420 and 0 not in data.items  # 0..2419 shifted to 1..2420


def test_balance_summary_by_hand():
    share = np.array([[1.0, 0.0], [0.5, 0.5], [0.7, 0.3], [1.0, 0.0]])
    s = balance.summary(share)
    h = -(0.7 * np.log2(0.7) + 0.3 * np.log2(0.3))
    assert s["mean_entropy_bits"] == pytest.approx((0 + 1 + h + 0) / 4)
    assert s["single_interest_users"] == 0.5
    totals = np.array([0.8, 0.2])  # mean shares: Gini = |0.8 - 0.2| * 2 / (2 * 4 * 0.5)
    assert s["gini_of_interest_totals"] == pytest.approx(0.3)
    assert balance.gini([1, 1, 1, 1]) == 0.0 and balance.gini([0, 0, 0, 4]) == pytest.approx(0.75)
    assert s["interest_totals"] == pytest.approx(sorted(totals, reverse=True))


def test_table_and_balance_on_a_small_synthetic_slice(tmp_path):
    from bam_data.synth import SynthConfig, generate, write
    data_path = tmp_path / "s.txt"
    write(*generate(SynthConfig(users=300, items=120, topics=6, mean_len=12)), str(data_path))
    args = ["table", "--data", data_path, "--seeds", 2, "--out", tmp_path / "t", "--max-iters", 30,
            "--eval-every", 15, "--dim", 16, "--seq-len", 10, "--n-negatives", 40, "--batch-size", 32]
    result = run(*args)
    assert result.exit_code == 0, result.output
    for method in ("SASRec", "ComiRec", "REMI", "BaM"):
        assert f"| {method} |" in result.output
    assert "BaM vs best competitor" in result.output and "0 of 8 runs reused" in result.output
    table = json.loads((tmp_path / "t" / "table.json").read_text())
    assert set(table["table"]) == {"SASRec", "ComiRec", "REMI", "BaM"}
    assert all(len(v) == 2 for v in table["runs"].values())
    rows = "".join(ln for ln in (tmp_path / "t" / "table.md").read_text().splitlines() if ln.startswith("| "))
    assert rows.count("**") == 8 and rows.count("<u>") == 4  # one best and one second best per column
    # seeds as intervals, and the differences of the pairs in the table: over seeds and users together (primary),
    # over seeds only and over users only (secondary), one family corrected by Holm
    from bam_evidence import per_user
    for c, cell in table["table"]["BaM"].items():
        assert cell["low"] < cell["mean"] < cell["high"] or cell["low"] == cell["mean"] == cell["high"], c
    users = len(per_user.load(tmp_path / "t" / "BaM" / "seed-2021" / per_user.FILE).users)
    assert {(r["b"], r["a"]) for r in table["differences"]} == {("BaM", "ComiRec"), ("BaM", "REMI")}
    assert len(table["differences"]) == 8 and all(r["family"] == sum(r2["p"] is not None
                                                                     for r2 in table["differences"])
                                                  for r in table["differences"])
    for r in table["differences"]:
        b, a, c = r["b"], r["a"], r["metric"]
        by_seed = [x["test"][c] - y["test"][c] for x, y in zip(table["runs"][b], table["runs"][a])]
        assert r["diff"] == pytest.approx(sum(by_seed) / 2, abs=1e-12) and r["seeds"] == 2 and r["users"] == users
        # each user's metric averaged over the two seeds: the pairs are the users, and mean(d) is unchanged
        assert r["users"] == users and r["verdict"] in ("not shown to differ", f"{a} ahead", f"{b} ahead")
        assert r["seeds_low"] <= r["diff"] <= r["seeds_high"]
    assert "primary 95% interval" in result.output and "p (Holm)" in result.output
    assert "| BaM - REMI | nDCG@10 |" in result.output and (tmp_path / "t" / "forest.png").stat().st_size > 5000
    again = run(*args)
    assert "8 of 8 runs reused" in again.output and again.exit_code == 0
    # balance: a heatmap of two checkpoints, with the planted-topic figures of the synthetic data
    hard = tmp_path / "t" / "ComiRec" / "seed-2021" / "checkpoint.pt"
    bam = tmp_path / "t" / "BaM" / "seed-2021" / "checkpoint.pt"
    result = run("balance", "--checkpoint", hard, "--compare", bam, "--out", tmp_path / "fig.png",
                 "--json", tmp_path / "b.json")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "fig.png").stat().st_size > 5000
    report = json.loads((tmp_path / "b.json").read_text())
    assert len(report) == 2 and all("interest_topic_purity" in r for r in report.values())
    assert "--methods: unknown" in run("table", "--data", data_path, "--methods", "Nope").output
