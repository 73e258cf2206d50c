"""
bam_numpy: the NumPy twin of bam_minimal.py. BaM, ComiRec-SA and MIND in NumPy with hand-written
gradients and a numba evaluation engine; it never imports torch.

A second, independent implementation that agrees with the PyTorch file to rounding error
(`python cli.py crosscheck`) is the evidence that both are right. It also trains and evaluates on
a CPU without torch:

    python -m bam_numpy data.txt --max_iters=20000 --out=weights.npz   # train, official data format
    python -m bam_numpy --synthetic --max_iters=2000                   # the built-in synthetic data
    python -m bam_numpy.golden vectors.npz my_bam.py:golden            # check an implementation
    python -m bam_bench.numba_engine ../shared/data/amazon-beauty-2014/Beauty.txt

Modules, in the order of the algorithm (function names mirror bam_minimal.py's):
  config    Config (bam_minimal.Config's fields and defaults), check_config, tau_at
  data      Dataset, load_data, windows, train_batch, split_targets (reading and train_counts are
            bam_data's, the torch-free data layer that cli.py uses too: read, read_official)
  encoders  ComiRec-SA and MIND forward and backward, squash, init_params
  loss      interest_logits, select_interest, item_scores, softmax_loss, routing_regulariser,
            bam_loss, loss_and_grads (forward + loss + backward)
  ranking   model_scorer, mask_history, target_rank, top_k, metrics_from_ranks, and the fused numba
            `evaluate`
  comirec_split  ComiRec's evaluation protocol (`protocol="comirec"`): the split, the targets, the metrics
            (bam_protocols/comirec_split.py's text) and its evaluate (the twin trains under leave-one-out only)
  training  adam_step (torch.optim.Adam's update), train
  weights   .npz weights under the official parameter names
  golden    golden test vectors: the reference implementation and the checker
(The engine's benchmark is bam_bench.numba_engine: torch-free too, but a benchmark, not the twin.)

Threads: numba's `workqueue` threading layer is chosen here unless NUMBA_THREADING_LAYER is set.
The default (OpenMP, when present) keeps its threads spinning after each parallel region, and on a
2-core machine they then compete with OpenBLAS's threads in the next matmul (docs/performance.md).
"""
import os

import numba

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

from bam_numpy.config import Config, InputError, check_config, tau_at  # noqa: E402
from bam_data import read, read_official, train_counts  # noqa: E402
from bam_numpy.data import Dataset, load_data, split_targets, train_batch, windows  # noqa: E402
from bam_numpy.encoders import MASK, backward, forward, init_params, squash  # noqa: E402
from bam_numpy.ranking import (evaluate, mask_history, metrics_from_ranks, model_scorer,  # noqa: E402
                                target_rank, top_k)
from bam_numpy.loss import (bam_loss, interest_logits, item_scores, loss_and_grads,  # noqa: E402
                            routing_regulariser, select_interest, softmax_loss)
from bam_numpy.training import adam_init, adam_step, train  # noqa: E402
from bam_numpy.weights import load_weights, save_weights  # noqa: E402

__all__ = ["Config", "InputError", "check_config", "tau_at", "Dataset", "load_data", "read", "read_official",
           "split_targets",
           "train_batch", "train_counts", "windows", "MASK", "backward", "forward", "init_params", "squash",
           "evaluate", "mask_history", "metrics_from_ranks", "model_scorer", "target_rank", "top_k", "bam_loss",
           "interest_logits", "item_scores", "loss_and_grads", "routing_regulariser", "select_interest",
           "softmax_loss", "adam_init", "adam_step", "train", "load_weights", "save_weights"]
