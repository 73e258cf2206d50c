"""
bench.py: how fast bam_minimal trains and evaluates, as ratios measured in one run.

    python bench.py                                   # ../shared/data/amazon-beauty-2014/Beauty.txt
    python bench.py --data movies.txt --json bench.json
    python bench.py --scale                           # time and memory against data size (bam_bench/scale.py)
    python bench.py --run                             # a whole default BaM run: steps, validation, test

Every figure is a ratio to something timed in the same process, so that it means the same on a
fast or a slow machine:
  * a bare torch.mm that does the same matrix FLOPs (the official model's dense FLOPs: the MLP on
    every position, padded ones too), and
  * an "official-style" loop written here that has the official code's costs: a Python loop that
    builds each batch, the dense MLP, a per-parameter Adam, and evaluation one user at a time.
Timings are medians of repeated runs after a warm-up (bam_bench/measure.py). Public tools only: torch, numpy, time.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import bam_minimal as bm
from bam_data import formats
from bam_experiments import sasrec
from bam_runs import run_folder
from bam_bench import scale
from bam_bench.measure import median_time
from bam_runs.datasets import load_dataset
from bam_runs.allocator import keep_freed_memory

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "shared", "data",
                            "amazon-beauty-2014", "Beauty.txt")

# -----------------------------------------------------------------------------
# Timing helpers


def matmul_seconds(flops, m, k, n, repeat=5):
    """Seconds a bare torch.mm of shape (m, k) @ (k, n), output preallocated, needs for `flops`."""
    a, b, out = torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)
    per = median_time(lambda: torch.mm(a, b, out=out), repeat=repeat * 4, warmup=3)
    return per * flops / (2.0 * m * k * n)


def train_flops(cfg):
    """Matrix FLOPs of one official (dense) ComiRec-SA step: forward, and twice that backward."""
    B, L, d, N, S = cfg.batch_size, cfg.seq_len, cfg.dim, cfg.n_interests, cfg.n_negatives
    forward = 2 * B * (L * (d * 4 * d + 4 * d * N) + N * L * d + S * d + d)
    return 3 * forward


def eval_flops(cfg, users, n_items):
    """Matrix FLOPs of evaluating `users` users: the dense encoder and the full-item scores."""
    L, d, N = cfg.seq_len, cfg.dim, cfg.n_interests
    return 2 * users * (L * (d * 4 * d + 4 * d * N) + N * L * d + N * (n_items + 1) * d)

# -----------------------------------------------------------------------------
# Ours: bam_minimal's training step and batched evaluation


def our_train_step(cfg, data, model, opt, rng, gen):
    def step():
        history, mask, target = (torch.as_tensor(a) for a in bm.train_batch(data, rng, cfg.batch_size, cfg.seq_len))
        negatives = torch.randint(0, data.n_items + 1, (cfg.n_negatives,), generator=gen)
        u = torch.rand(len(target), generator=gen)
        interests, attention = model(history, mask, gen)
        loss = bm.bam_loss(model, cfg, interests, attention, target, negatives, u, cfg.tau)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step

# -----------------------------------------------------------------------------
# Official-style: the same model and loss with the official code's costs (written here, not copied)


def official_style_batch(seqs, users, rng, B, L):
    """A Python loop over the batch, one list slice per user, as the official DataIterator does."""
    targets, histories, masks = [], [], []
    for u in users[rng.integers(0, len(users), B)]:
        items = seqs[u][:-2]
        while len(items) < 2:
            items = seqs[users[rng.integers(0, len(users))]][:-2]
        k = int(rng.integers(1, len(items)))
        targets.append(items[k])
        lo = max(0, k - L)
        histories.append(items[lo:k] + [0] * (L - (k - lo)))
        masks.append([1.0] * (k - lo) + [0.0] * (L - (k - lo)))
    return torch.Tensor(histories).long(), torch.Tensor(masks), torch.Tensor(targets).long()


def official_style_forward(model, history, mask, cfg):
    """The dense MLP on every position, then the masking constant on padded ones."""
    h = model.embeddings(history) * mask[..., None]
    logits = model.linear2(model.linear1(h + model.position_embedding.repeat(len(h), 1, 1))).transpose(2, 1)
    pad = torch.ones_like(logits) * bm.MASK
    attention = F.softmax(torch.where(mask[:, None].repeat(1, cfg.n_interests, 1) == 0, pad, logits), -1)
    return attention @ h


def official_style_train_step(cfg, data, seqs, users, model, opt, rng):
    probs = torch.full((data.n_items + 1,), 1.0 / (data.n_items + 1))

    def step():
        history, mask, target = official_style_batch(seqs, users, rng, cfg.batch_size, cfg.seq_len)
        interests = official_style_forward(model, history, mask, cfg)
        e = model.embeddings(target)
        index = torch.multinomial(torch.softmax((interests @ e[..., None])[..., 0], -1), 1)[:, 0]
        selection = interests.reshape(-1, cfg.dim)[index + torch.arange(len(index)) * cfg.n_interests]
        negatives = torch.multinomial(probs, cfg.n_negatives, replacement=True)
        E = model.embeddings.weight
        logits = torch.cat([(selection * E[target]).sum(1, keepdim=True), selection @ E[negatives].T], 1)
        loss = F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


@torch.no_grad()
def official_style_eval(model, seqs, users, cfg):
    """One user at a time: scores, the window set to 0, max over interests, top-k twice."""
    hits = 0
    for u in users:
        items = seqs[u][:-1]
        k = len(items)
        lo = max(0, k - cfg.seq_len)
        window = items[lo:] + [0] * (cfg.seq_len - (k - lo))
        mask = [1.0] * (k - lo) + [0.0] * (cfg.seq_len - (k - lo))
        interests = official_style_forward(model, torch.Tensor([window]).long(), torch.Tensor([mask]), cfg)
        score = (interests @ model.embeddings.weight.T)[0]
        score[:, window] = 0
        s = score.max(0).values
        for kk in (10, 20):
            top = torch.topk(s, kk).indices
            hits += int(seqs[u][-1] in top)
    return hits

# -----------------------------------------------------------------------------
# The time to a result: one whole default run, split into its parts


def time_to_result(args, data, seqs, users):
    """Train the default BaM run to its early stop and test it, timing every evaluation (bm.evaluate is
    wrapped for this run only); then the official code's cost for the same run, estimated from the
    official-style step and one-user-at-a-time evaluation timed in this process: the same iterations,
    its validation of 1,000 random users at every validation, and its test of every user."""
    cfg = bm.Config(device="cpu", **({"max_iters": args.max_iters} if args.max_iters else {}))
    spent = dict(valid=0.0, test=0.0, valid_calls=0)
    evaluate = bm.evaluate

    def timed(scorer, data_, split, cfg_, *a, **k):
        t = time.perf_counter()
        try:
            return evaluate(scorer, data_, split, cfg_, *a, **k)
        finally:
            spent[split] += time.perf_counter() - t
            spent["valid_calls"] += split == "valid"
    bm.evaluate = timed
    try:
        t = time.perf_counter()
        _, result = bm.train(cfg, data, log=lambda line: print(line, flush=True))
        total = time.perf_counter() - t
    finally:
        bm.evaluate = evaluate
    iters, validations = result["iters"], spent["valid_calls"]
    # The official code's cost of the same run, from its style's step and per-user evaluation timed now.
    torch.manual_seed(0)
    ref = bm.build_model(cfg, data.n_items)
    step = official_style_train_step(cfg, data, seqs, users, ref, torch.optim.Adam(ref.parameters(), lr=cfg.lr),
                                     np.random.default_rng(0))
    official_step = median_time(lambda: [step() for _ in range(50)], repeat=3) / 50
    some = users[np.random.default_rng(0).permutation(len(users))[:args.official_users]]
    official_user = median_time(lambda: official_style_eval(ref, seqs, some, cfg), repeat=1) / len(some)
    official = dict(train=iters * official_step, valid=validations * 1000 * official_user,
                    test=len(users) * official_user)
    out = dict(iters=iters, best_iter=result["best_iter"], validations=validations, seconds=total,
               train_seconds=total - spent["valid"] - spent["test"], valid_seconds=spent["valid"],
               test_seconds=spent["test"], test=result["test"], official_step_ms=official_step * 1e3,
               official_user_ms=official_user * 1e3, official_seconds=sum(official.values()),
               **{f"official_{k}_seconds": v for k, v in official.items()})
    print(f"run    {total:.0f} s to iteration {iters} (best {result['best_iter']}): training steps "
          f"{out['train_seconds']:.0f} s, {validations} validations {spent['valid']:.0f} s "
          f"({spent['valid'] / total:.0%}), test {spent['test']:.1f} s; "
          f"test recall@20 {result['test']['recall@20']:.4f}")
    print(f"       official code, estimated for the same run: {out['official_seconds']:.0f} s (steps "
          f"{official['train']:.0f} s at {official_step * 1e3:.1f} ms, validations {official['valid']:.0f} s, test "
          f"{official['test']:.0f} s); ours / official {total / out['official_seconds']:.2f}")
    return out

# -----------------------------------------------------------------------------
# The benchmark


def main():
    sasrec.register()  # the SASRec row
    if "--scale" in sys.argv[1:]:  # the scaling benchmark has options of its own: `python bench.py --scale --help`
        return scale.main([a for a in sys.argv[1:] if a != "--scale"])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", action="store_true", help="instead: time and peak memory of reading, training and "
                    "evaluation against the data size (bam_bench/scale.py; --scale --help for its options)")
    ap.add_argument("--data", default=DEFAULT_DATA, help="interaction file (any format cli.py reads)")
    ap.add_argument("--json", default=None, help="write the figures to this JSON file")
    ap.add_argument("--steps", type=int, default=200, help="training steps per timing")
    ap.add_argument("--official-users", type=int, default=2000, help="users for the one-at-a-time evaluation")
    ap.add_argument("--no-numpy", action="store_true", help="skip the bam_numpy engine")
    ap.add_argument("--run", action="store_true", help="instead: the wall time of a whole default BaM run (train to "
                    "the early stop, then the test) split into steps, validation and test, beside the official "
                    "code's estimated cost (about 8 minutes on Beauty); bm.train with no run folder, so without "
                    "cli.py's checkpoint writes and most-popular baseline")
    ap.add_argument("--max-iters", type=int, default=0, help="--run: stop here instead of at the early stop")
    args = ap.parse_args()
    keep_freed_memory()  # as cli.py does
    try:
        data = load_dataset(args.data)
    except (formats.InputError, bm.InputError) as e:
        sys.exit(print(f"error: {e}", file=sys.stderr) or 2)
    seqs = {int(u): data.items[data.start[r]:data.start[r + 1]].tolist() for r, u in enumerate(data.users)}
    users = data.users
    cfg = bm.Config(device="cpu")
    print(f"{args.data}: {len(users)} users, {data.n_items} items; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    out = dict(data=args.data, users=int(len(users)), items=data.n_items, threads=torch.get_num_threads())
    if args.run:
        out.update(time_to_result(args, data, seqs, users))
        if args.json:
            run_folder.save_json(out, args.json)
        return

    # training ------------------------------------------------------------------------------
    torch.manual_seed(0)
    model = bm.build_model(cfg, data.n_items)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)
    ours = median_time(lambda s=our_train_step(cfg, data, model, opt, np.random.default_rng(0),
                                               torch.Generator().manual_seed(0)): [s() for _ in range(args.steps)],
                       repeat=3) / args.steps
    torch.manual_seed(0)
    ref = bm.build_model(cfg, data.n_items)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=cfg.lr)
    official = median_time(lambda s=official_style_train_step(cfg, data, seqs, users, ref, ref_opt,
                                                               np.random.default_rng(0)): [s() for _ in range(50)],
                           repeat=3) / 50
    bare_train = matmul_seconds(train_flops(cfg), cfg.batch_size * cfg.seq_len, cfg.dim, 4 * cfg.dim)
    out.update(train_step_ms=ours * 1e3, train_samples_per_s=cfg.batch_size / ours,
               train_step_ms_official_style=official * 1e3, train_matmul_ms=bare_train * 1e3,
               train_gflop_per_step=train_flops(cfg) / 1e9)

    # the other models' steps, in the same run: the ratio to ComiRec-SA's is what the table waits on --------
    for name, over in (("mind", dict(model="mind")), ("sasrec", dict(model="sasrec", n_interests=1, selection="hard"))):
        other_cfg = bm.Config(device="cpu", **over)
        torch.manual_seed(0)
        other = bm.build_model(other_cfg, data.n_items)
        other_opt = torch.optim.Adam(other.parameters(), lr=cfg.lr, fused=True)
        step = our_train_step(other_cfg, data, other, other_opt, np.random.default_rng(0),
                              torch.Generator().manual_seed(0))
        out[f"train_step_ms_{name}"] = median_time(lambda: [step() for _ in range(args.steps)],
                                                   repeat=3) / args.steps * 1e3

    # evaluation ----------------------------------------------------------------------------
    model.eval()
    eval_s = median_time(lambda: bm.evaluate(bm.model_scorer(model), data, "test", cfg), repeat=3)
    some = users[np.random.default_rng(0).permutation(len(users))[:args.official_users]]
    official_eval = median_time(lambda: official_style_eval(model, seqs, some, cfg), repeat=1) / len(some)
    block = 256
    bare_eval = matmul_seconds(eval_flops(cfg, len(users), data.n_items), block * cfg.n_interests, cfg.dim,
                               data.n_items + 1)
    bare_scoring = bare_eval * (cfg.n_interests * (data.n_items + 1)) / (
        eval_flops(cfg, 1, data.n_items) / (2 * cfg.dim))
    out.update(eval_seconds=eval_s, eval_users_per_s=len(users) / eval_s, matmul_seconds=bare_eval,
               matmul_seconds_scoring_only=bare_scoring, eval_users_per_s_official_style=1 / official_eval,
               eval_gflop=eval_flops(cfg, len(users), data.n_items) / 1e9)

    if not args.no_numpy:
        from bam_bench import numba_engine  # numba is required: a failed import is an error, not a missing row
        out.update(numba_engine.run(args.data))

    # report --------------------------------------------------------------------------------
    r = out
    print(f"train  ours {r['train_step_ms']:.2f} ms/step ({r['train_samples_per_s']:.0f} samples/s); "
          f"official-style {r['train_step_ms_official_style']:.2f} ms; bare mm for the same "
          f"{r['train_gflop_per_step']:.2f} GFLOP {r['train_matmul_ms']:.2f} ms")
    print(f"       ratio to bare mm: ours {r['train_step_ms'] / r['train_matmul_ms']:.2f}, official-style "
          f"{r['train_step_ms_official_style'] / r['train_matmul_ms']:.2f}; speed-up over official-style "
          f"{r['train_step_ms_official_style'] / r['train_step_ms']:.2f}x")
    print(f"       MIND {r['train_step_ms_mind']:.2f} ms/step ({r['train_step_ms_mind'] / r['train_step_ms']:.2f}x "
          f"ComiRec-SA's), SASRec {r['train_step_ms_sasrec']:.2f} ms/step "
          f"({r['train_step_ms_sasrec'] / r['train_step_ms']:.2f}x ComiRec-SA's)")
    print(f"eval   ours {r['eval_seconds']:.2f} s for {len(users)} users ({r['eval_users_per_s']:.0f} users/s); "
          f"official-style {r['eval_users_per_s_official_style']:.0f} users/s; bare mm for the same "
          f"{r['eval_gflop']:.1f} GFLOP {r['matmul_seconds']:.2f} s "
          f"(scoring only {r['matmul_seconds_scoring_only']:.2f} s)")
    print(f"       ratio to bare mm: ours {r['eval_seconds'] / r['matmul_seconds']:.2f} "
          f"(scoring only {r['eval_seconds'] / r['matmul_seconds_scoring_only']:.2f}); speed-up over "
          f"official-style {r['eval_users_per_s'] / r['eval_users_per_s_official_style']:.1f}x")
    if "eval_users_per_s_numpy" in r:
        print(f"numpy  {r['eval_seconds_numpy']:.2f} s ({r['eval_users_per_s_numpy']:.0f} users/s); ratio to "
              f"torch {r['eval_users_per_s_numpy'] / r['eval_users_per_s']:.2f}x faster; ratio to bare mm "
              f"{r['eval_seconds_numpy'] / r['matmul_seconds']:.2f}; peak {r['numpy_peak_mb']:.0f} MB")
    if args.json:
        run_folder.save_json({k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}, args.json)


if __name__ == "__main__":
    main()
