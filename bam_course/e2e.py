"""
bam_course/e2e.py: Part 8, end to end. The student's whole file trains `hard` and `bam` on planted-topic
synthetic data, in the student's process, and hands back only the weights; the grader loads them into the
reference's model class and measures them with the reference's own ruler: Recall@20 against most popular,
topic purity, and the balance of the interests (calibrated in docs/course.md, "Part 8, end to end").
"""
import functools
import json

import numpy as np

SYNTH = dict(users=1000, items=400, topics=10, mean_len=20)
TRAIN = dict(model="comirec", dim=32, n_interests=4, seq_len=20, batch_size=64, n_negatives=200, max_iters=3000,
             eval_every=1000, patience=100, device="cpu")
SELECTIONS = ("hard", "bam")
BEAT_POPULAR = 2.0      # BaM's Recall@20 at least this many times the most-popular baseline's
PURITY_FLOOR = 0.9      # BaM's interest-topic purity at least this
PURITY_SLACK = 0.02     # and at least hard's minus this
BALANCE_MARGIN = 0.07   # BaM's balance at least hard's plus this (about half the reference's smallest margin)
SECONDS = 25            # the part on one core (measured: 26 s of CPU, grader and student together, seed 3)


class BadWeights(ValueError):
    """What the student's process handed back is not the weights of the two models."""


@functools.lru_cache(maxsize=2)
def synthetic(seed):
    """The planted-topic data of a seed (made once: `inputs` and `measure` both need it; neither changes it)."""
    from bam_data import synth
    seqs, truth = synth.generate(synth.SynthConfig(seed=seed, **SYNTH))
    return seqs, json.loads(json.dumps(truth))                 # user ids as strings, as in a .truth.json


def inputs(seed):
    """Part 8's one case, as arrays: the synthetic sequences (users, lengths, items laid end to end), the
    seed, the training config (JSON) and the selections. The harness trains on them; nothing else goes in."""
    seqs, _ = synthetic(seed)
    users = np.array(sorted(seqs), np.int64)
    return dict(seed=seed, config=json.dumps(TRAIN), selections=",".join(SELECTIONS), users=users,
                lengths=np.array([len(seqs[u]) for u in users], np.int64),
                items=np.array([i for u in users for i in seqs[u]], np.int64))


def load(ref, cfg, n_items, weights, selection):
    """The reference's model with the student's weights for `selection`, or BadWeights naming the problem."""
    import torch
    model = ref.build_model(cfg, n_items)
    want = model.state_dict()
    got = {k.split("/", 1)[1]: v for k, v in weights.items() if k.startswith(selection + "/")}
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing or extra:
        raise BadWeights(f"the {selection} model's parameters are not ComiRec-SA's: "
                         + (f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"))
    for k, v in got.items():
        v = np.asarray(v)
        if v.dtype.kind != "f" or v.shape != tuple(want[k].shape):
            raise BadWeights(f"the {selection} model's {k}: {v.dtype} {v.shape}, expected float "
                             f"{tuple(want[k].shape)} (d={cfg.dim}, N={cfg.n_interests}, {n_items} items)")
        if not np.isfinite(v).all():
            raise BadWeights(f"the {selection} model's {k} holds inf or nan: training diverged")
    model.load_state_dict({k: torch.as_tensor(np.asarray(v), dtype=want[k].dtype) for k, v in got.items()})
    return model.eval()


def balance_of(ref, model, data, cfg):
    """Mean over the test users of the normalised entropy of softmax(tau * M_u^T e_target) over the N
    interests: how evenly the interests share each target (1: equally; 0: one takes it all)."""
    import torch
    rows = np.arange(len(data.users))
    history, mask, target = (torch.as_tensor(a) for a in ref.windows(data, rows, ref.split_targets(data, "test"),
                                                                     cfg.seq_len))
    with torch.no_grad():
        interests = model(history, mask)[0]                                    # (U, N, d)
        logits = ref.interest_logits(model, cfg.selection, interests, model.embeddings.weight[target])  # (U, N)
        p = torch.softmax(cfg.tau * logits.double(), -1)                       # (U, N)
        entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(-1) / np.log(p.shape[-1])   # (U,)
    return float(entropy.mean())


def measure(ref, weights, seed):
    """In the grader's process: the numbers that `grade` judges, from the weights alone."""
    from bam_experiments import balance
    from bam_experiments import baselines
    seqs, truth = synthetic(seed)
    data = ref.Dataset(seqs, name="synthetic")
    out = {}
    for selection in SELECTIONS:
        cfg = ref.Config(selection=selection, seed=seed, **TRAIN)
        model = load(ref, cfg, data.n_items, weights, selection)
        _, top, source, metrics = balance.interest_usage(model, data, cfg)
        out[f"{selection}/recall@20"] = metrics["recall@20"]
        out[f"{selection}/purity"] = balance.topic_recovery(top, source, data, truth)["interest_topic_purity"]
        out[f"{selection}/balance"] = balance_of(ref, model, data, cfg)
    cfg = ref.Config(seed=seed, **TRAIN)
    out["popular/recall@20"] = ref.evaluate(baselines.popularity_scorer(data, "cpu"), data, "test", cfg)[0]["recall@20"]
    return {k: float(v) for k, v in out.items()}


def grade(out):
    """-> {subtest: (passed, message)} from run's numbers."""
    bam, pop = out["bam/recall@20"], out["popular/recall@20"]
    need = BEAT_POPULAR * pop
    purity, hard = out["bam/purity"], out["hard/purity"]
    floor = max(PURITY_FLOOR, hard - PURITY_SLACK)
    spread, hard_spread = out["bam/balance"], out["hard/balance"]
    return {
        "BaM beats most popular": (
            bam >= need, f"BaM Recall@20 {bam:.3f} (hard {out['hard/recall@20']:.3f}), most popular {pop:.3f}: "
                         f"needs at least {need:.3f} ({BEAT_POPULAR:g}x)"),
        "BaM recovers the topics": (
            purity >= floor, f"interest-topic purity: BaM {purity:.3f}, hard {hard:.3f}: BaM needs at least "
                             f"{floor:.3f} (at least {PURITY_FLOOR:g}, and hard's minus {PURITY_SLACK:g})"),
        "BaM balances its interests": (
            spread >= hard_spread + BALANCE_MARGIN,
            f"balance (mean normalised entropy of softmax(tau * M_u^T e_target) over the interests, test users): "
            f"BaM {spread:.3f}, hard {hard_spread:.3f}: BaM needs at least hard's plus {BALANCE_MARGIN:g} "
            f"({hard_spread + BALANCE_MARGIN:.3f}); equal values mean your BaM training selects like hard "
            "(the argmax): check select_interest and the selection bam_loss passes it"),
    }


HINT = ("the whole file has to work: every part, then train() and evaluate(). Run python bam_student.py on "
        "a data file, or fix the parts that fail above first")
