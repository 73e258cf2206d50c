"""
bam_numpy/config.py: the configuration of the NumPy twin, field for field bam_minimal.Config.

The twin keeps every field of the PyTorch file, with the same defaults and the same text
(tests/test_twin_source.py), so that a config moves between the two as a plain dict
(`Config(**asdict(cfg))`). The twin implements `comirec` and `mind`: `sasrec` is refused, and
`device` is ignored (the twin always runs on the CPU); `n_blocks` and `dropout` only get checked.
`protocol` is not checked here: the twin's training refuses any but its own leave-one-out
(training.check_trainable), and its evaluators are chosen by module (bam_numpy.evaluate, bam_numpy.comirec_split).
InputError is bam_data's: one class for every torch-free error, reader and config alike.

    from bam_numpy.config import Config, check_config
    cfg = Config(selection="hard", n_interests=8)
    check_config(cfg)                      # InputError `bad config: ...` naming the first bad option
"""
import math
from dataclasses import dataclass, fields

from bam_data.formats import InputError

# -----------------------------------------------------------------------------
# Config. Defaults are the official ones (github.com/jlunits2/BaM, src/main.py) except `selection` (official: hard)
# and docs/differences.md: `valid_users`, `valid_sample` (official: 1,000 random users), `history_mask` (`official`).


@dataclass
class Config:
    model: str = "comirec"        # comirec (ComiRec-SA) | mind (MIND / ComiRec-DR) | sasrec (one interest)
    dim: int = 64                 # d, the embedding size (official: hidden_size)
    n_interests: int = 4          # N
    seq_len: int = 50             # L, the history window
    selection: str = "bam"        # hard | bam | bam-l | expected   (official default: hard)
    tau: float = 1.0              # temperature of the selection softmax
    tau_schedule: str = "constant"  # constant | hard-to-soft | soft-to-hard (linear in tau)
    tau_hard: float = 10.0        # the "hard" end of a tau schedule
    tau_anneal_iters: int = 10000
    linear_size: int = 16         # d' of bam-l
    multi_loss: bool = False      # [BD24] multi-interest loss
    loss: str = "sampled"         # sampled | full
    n_negatives: int = 1280       # uniform negatives, drawn once per batch and shared by it
    remi_beta: float = 0.0        # REMI interest-aware hard negatives (0: off)
    remi_lambda: float = 0.0      # REMI routing regularisation (0: off)
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    max_iters: int = 1_000_000
    eval_every: int = 1000
    patience: int = 15            # stop after more than `patience` validations without a better Recall@10
    valid_users: int = 0          # 0: the fixed users below (deterministic); 1000: the official random sample
    valid_sample: int = 5000      # validate this many users, drawn once from the seed (0: every user)
    history_mask: str = "exclude"  # exclude | official | none
    protocol: str = "loo"         # loo (leave-one-out, [KDD24]) | one that bam_protocols registers (cli.py): comirec
    routing_iters: int = 3        # MIND
    n_blocks: int = 2             # SASRec
    dropout: float = 0.2          # SASRec
    seed: int = 2021
    device: str = "auto"          # auto | cpu | cuda


CHOICES = dict(model=("comirec", "mind", "sasrec"), selection=("hard", "bam", "bam-l", "expected"),
               tau_schedule=("constant", "hard-to-soft", "soft-to-hard"), device=("auto", "cpu", "cuda"),
               history_mask=("exclude", "official", "none"), loss=("sampled", "full"))

POSITIVE = ("dim", "n_interests", "seq_len", "batch_size", "n_negatives", "max_iters", "eval_every", "linear_size",
            "routing_iters", "n_blocks", "tau_anneal_iters", "lr")
NON_NEGATIVE = ("tau", "tau_hard", "patience", "valid_users", "valid_sample", "remi_beta", "remi_lambda",
                "weight_decay", "seed")
FINITE = ("tau", "tau_hard", "lr", "weight_decay", "remi_beta", "remi_lambda")
MAX_TAU = 1e4  # softmax(tau * logits) is one-hot long before: a larger tau is a typo, or an overflow


KINDS = {bool: "true or false", str: "a string", float: "a number", int: "an integer"}


def type_errors(cfg):
    """A field of the wrong type (from a JSON file, say) as `name=value must be ...`."""
    bad = []
    for f in fields(cfg):
        v, kind = getattr(cfg, f.name), type(f.default)
        ok = (isinstance(v, bool) if kind is bool else isinstance(v, str) if kind is str else
              isinstance(v, (int, float)) and not isinstance(v, bool) if kind is float else
              isinstance(v, int) and not isinstance(v, bool))
        if not ok:
            bad.append(f"{f.name}={v!r} must be {KINDS[kind]}")
    return bad


def check_config(cfg):
    """Refuse a config that cannot run, naming the first bad option (bam_minimal.check_config's checks,
    plus: the float options must be finite, and tau at most 1e4; tau = nan, inf or 1e300 would
    silently turn BaM's sampling into "always interest 0")."""
    bad = type_errors(cfg)
    if not bad:
        bad += [f"{k}={getattr(cfg, k)} is not one of {', '.join(v)}" for k, v in CHOICES.items()
                if getattr(cfg, k) not in v]
        bad += [f"{k}={getattr(cfg, k)} must be a finite number" for k in FINITE if not math.isfinite(getattr(cfg, k))]
        bad += [f"{k}={getattr(cfg, k)} must be positive" for k in POSITIVE if not getattr(cfg, k) > 0]
        bad += [f"{k}={getattr(cfg, k)} must be 0 or more" for k in NON_NEGATIVE if not getattr(cfg, k) >= 0]
        bad += [f"{k}={getattr(cfg, k)} must be at most {MAX_TAU:g}" for k in ("tau", "tau_hard")
                if getattr(cfg, k) > MAX_TAU]
        bad += [why for broken, why in (
            (not 0 <= cfg.dropout < 1, f"dropout={cfg.dropout} must be in [0, 1)"),
            (cfg.model == "sasrec", "model=sasrec: bam_numpy twins ComiRec-SA and MIND only (use bam_minimal.py)"),
            (cfg.remi_lambda and cfg.model != "comirec",
             "remi_lambda > 0 acts on ComiRec-SA's attention: model comirec"),
            (cfg.remi_beta and cfg.loss == "full",
             "remi_beta > 0 reweights sampled negatives: loss sampled")) if broken]
    if bad:
        raise InputError(f"bad config: {bad[0]} (fix: change that option; --help shows the defaults)")


def tau_at(cfg, it):
    """The temperature at iteration `it`: constant, or a linear anneal between tau_hard and tau."""
    if cfg.tau_schedule == "constant":
        return cfg.tau
    a, b = (cfg.tau_hard, cfg.tau) if cfg.tau_schedule == "hard-to-soft" else (cfg.tau, cfg.tau_hard)
    return a + (b - a) * min(1.0, it / max(1, cfg.tau_anneal_iters))
