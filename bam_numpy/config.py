"""
bam_numpy/config.py: the configuration of the NumPy twin, field for field bam_minimal.Config.

The twin keeps every field of the PyTorch file, with the same defaults, so that a config moves
between the two as a plain dict (`Config(**asdict(cfg))`). tests/test_numpy_config.py checks that
the two stay equal. The twin implements `comirec` and `mind`; `sasrec` and `device` are accepted and
refused (sasrec) or ignored (device, the twin always runs on the CPU).

    from bam_numpy.config import Config
    cfg = Config(selection="hard", n_interests=8)
"""
from dataclasses import dataclass

# -----------------------------------------------------------------------------
# Config. Defaults are the official ones (github.com/jlunits2/BaM, src/main.py), except `selection`.


@dataclass
class Config:
    model: str = "comirec"        # comirec (ComiRec-SA) | mind (MIND / ComiRec-DR) | sasrec (torch only)
    dim: int = 64                 # d, the embedding size
    n_interests: int = 4          # N
    seq_len: int = 50             # L, the history window
    selection: str = "bam"        # hard | bam | bam-l | expected
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
    valid_users: int = 0          # 0: all users (deterministic); 1000: the official random sample
    history_mask: str = "exclude"  # exclude | official | none
    routing_iters: int = 3        # MIND
    n_blocks: int = 2             # SASRec (torch only)
    dropout: float = 0.2          # SASRec (torch only)
    seed: int = 2021
    device: str = "auto"          # ignored: the twin runs on the CPU


CHOICES = dict(model=("comirec", "mind", "sasrec"), selection=("hard", "bam", "bam-l", "expected"),
               tau_schedule=("constant", "hard-to-soft", "soft-to-hard"), loss=("sampled", "full"),
               history_mask=("exclude", "official", "none"), device=("auto", "cpu", "cuda"))


class InputError(ValueError):
    """Bad input. The message is one line that names the file, the line and the fix."""


def check_config(cfg):
    for name, allowed in CHOICES.items():
        if getattr(cfg, name) not in allowed:
            raise InputError(f"--{name}={getattr(cfg, name)}: not one of {', '.join(allowed)}")
    if cfg.model == "sasrec":
        raise InputError("--model=sasrec: bam_numpy twins ComiRec-SA and MIND only "
                         "(fix: use bam_minimal.py for SASRec)")
    if cfg.remi_lambda and cfg.model != "comirec":
        raise InputError("--remi_lambda needs --model=comirec: the regulariser acts on ComiRec-SA's attention")
    if cfg.remi_beta and cfg.loss == "full":
        raise InputError("--remi_beta reweights sampled negatives: use it with --loss=sampled")


def tau_at(cfg, it):
    """The temperature at iteration `it`: constant, or a linear anneal between tau_hard and tau."""
    if cfg.tau_schedule == "constant":
        return cfg.tau
    a, b = (cfg.tau_hard, cfg.tau) if cfg.tau_schedule == "hard-to-soft" else (cfg.tau, cfg.tau_hard)
    return a + (b - a) * min(1.0, it / max(1, cfg.tau_anneal_iters))
