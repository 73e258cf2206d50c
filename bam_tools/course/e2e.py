"""
bam_tools/course/e2e.py: Part 8, end to end. The student's whole file (its Config, Dataset, models,
losses, train loop and evaluation) trains `hard` and `bam` on the built-in synthetic data with
planted topics, in the student's process, and hands back only the two models' weights. The grader,
in its own process, loads them into the REFERENCE model class and measures them with the reference's
own ruler (bam_minimal.evaluate, the most-popular baseline, bam_tools.balance.topic_recovery), so
nothing the student's process reports is taken on trust but the weights, which are checked (names,
shapes, finite values).

The thresholds hold for the reference with a wide margin. Measured on seeds 0-10 (synthetic data
and training both seeded with the grading seed; 1000 users, 400 items, 10 topics, 3000 iterations):
BaM's Recall@20 is 3.4x to 3.9x the most-popular one's (the threshold asks for 2x), and the
interests' topic purity is 0.997 to 1.0 for both hard and BaM (the threshold: BaM at least 0.9, and
at least hard's minus 0.02). The whole part takes SECONDS on one CPU thread (both models, measured).
"""
import json

import numpy as np

SYNTH = dict(users=1000, items=400, topics=10, mean_len=20)
TRAIN = dict(model="comirec", dim=32, n_interests=4, seq_len=20, batch_size=64, n_negatives=200, max_iters=3000,
             eval_every=1000, patience=100, device="cpu")
SELECTIONS = ("hard", "bam")
BEAT_POPULAR = 2.0      # BaM's Recall@20 at least this many times the most-popular baseline's
PURITY_FLOOR = 0.9      # BaM's interest-topic purity at least this
PURITY_SLACK = 0.02     # and at least hard's minus this
SECONDS = 20            # the part on one core, rounded up (measured 17 s on the 2-core development machine)


class BadWeights(ValueError):
    """What the student's process handed back is not the weights of the two models."""


def synth_module():
    try:  # the synthetic data is moving to bam_data/synth.py
        from bam_data import synth
    except ImportError:
        from bam_tools import synth
    return synth


def synthetic(seed):
    synth = synth_module()
    seqs, truth = synth.generate(synth.SynthConfig(seed=seed, **SYNTH))
    return seqs, json.loads(json.dumps(truth))                 # user ids as strings, as in a .truth.json


def train_models(mod, seed):
    """In the runner's subprocess: train hard and bam with the student's module.
    -> {"<selection>/<parameter>": array}, the trained weights and nothing else."""
    seqs, _ = synthetic(seed)
    out = {}
    for selection in SELECTIONS:
        cfg = mod.Config(selection=selection, seed=seed, **TRAIN)
        model = mod.train(cfg, mod.Dataset(seqs, name="synthetic"))[0]
        out.update({f"{selection}/{k}": v.detach().cpu().numpy() for k, v in model.state_dict().items()})
    return out


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


def measure(ref, weights, seed):
    """In the grader's process: the numbers that `grade` judges, from the weights alone."""
    from bam_tools import balance, baselines
    seqs, truth = synthetic(seed)
    data = ref.Dataset(seqs, name="synthetic")
    out = {}
    for selection in SELECTIONS:
        cfg = ref.Config(selection=selection, seed=seed, **TRAIN)
        model = load(ref, cfg, data.n_items, weights, selection)
        _, top, source, metrics = balance.interest_usage(model, data, cfg)
        out[f"{selection}/recall@20"] = metrics["recall@20"]
        out[f"{selection}/purity"] = balance.topic_recovery(top, source, data, truth)["interest_topic_purity"]
    cfg = ref.Config(seed=seed, **TRAIN)
    out["popular/recall@20"] = ref.evaluate(baselines.popularity_scorer(data, "cpu"), data, "test", cfg)[0]["recall@20"]
    return {k: float(v) for k, v in out.items()}


def grade(out):
    """-> {subtest: (passed, message)} from run's numbers."""
    bam, pop = out["bam/recall@20"], out["popular/recall@20"]
    need = BEAT_POPULAR * pop
    purity, hard = out["bam/purity"], out["hard/purity"]
    floor = max(PURITY_FLOOR, hard - PURITY_SLACK)
    return {
        "BaM beats most popular": (
            bam >= need, f"BaM Recall@20 {bam:.3f} (hard {out['hard/recall@20']:.3f}), most popular {pop:.3f}: "
                         f"needs at least {need:.3f} ({BEAT_POPULAR:g}x)"),
        "BaM recovers the topics": (
            purity >= floor, f"interest-topic purity: BaM {purity:.3f}, hard {hard:.3f}: BaM needs at least "
                             f"{floor:.3f} (at least {PURITY_FLOOR:g}, and hard's minus {PURITY_SLACK:g})"),
    }


HINT = ("the whole file has to work: every part, then train() and evaluate(). Run python bam_student.py on "
        "a data file, or fix the parts that fail above first")
