"""
bam_tune/figure.py: `tune --grid`'s figure: the validation metric against each knob, the mean over the seeds with
its 95% t-interval (each seed's value averaged over the other knobs' points first), one line per study (the
method, and hard selection beside it with --against hard). Drawn from trial records, {params, value}, so that
`cli.py report` redraws it from the kept evidence (bam_evidence/kept.py) as `tune` draws it from the study.
Written atomically (bam_experiments.plots.save).
"""
import numpy as np
from optuna.trial import TrialState

from bam_evidence import stats
from bam_experiments import plots


def records(study):
    """The study's finished trials as records: [{params, value}]."""
    return [dict(params=t.params, value=t.value)
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]


def points(trials, knob):
    """[(value, mean, low, high)] of the records along `knob`; records that do not search `knob` (hard selection and
    tau: bam_tune.study.HARD_IGNORES) -> one point, value None, over all of them."""
    by = {}
    for t in trials:
        by.setdefault(t["params"].get(knob), {}).setdefault(t["params"].get("seed"), []).append(t["value"])
    out = []
    for value in sorted(by, key=lambda v: (str(type(v)), v)):
        per_seed = np.array([np.mean(v) for v in by[value].values()])   # (S,)
        mean, low, high = stats.t_interval(per_seed)
        out.append((value, mean, low, high))
    return out


def draw(studies, knobs, path, metric="validation recall@10"):
    """studies: {label: [records]}; one panel per knob."""
    fig, axes = plots.plt.subplots(1, len(knobs), figsize=(5.0 * len(knobs), 3.8), squeeze=False)
    for ax, knob in zip(axes[0], knobs):
        for i, (label, trials) in enumerate(studies.items()):
            got = points(trials, knob)
            if not got:
                continue
            if got[0][0] is None:  # the knob means nothing to this study: its level over every point, as a band
                line = ax.axhline(got[0][1], ls="--", lw=1, color=f"C{i}", label=f"{label} (no {knob})")
                if got[0][2] is not None:
                    ax.axhspan(got[0][2], got[0][3], color=line.get_color(), alpha=0.12)
                continue
            xs = np.arange(len(got)) + (i - (len(studies) - 1) / 2) * 0.08   # side by side
            means = np.array([g[1] for g in got])
            err = np.array([[g[1] - g[2], g[3] - g[1]] if g[2] is not None else [0, 0] for g in got]).T
            ax.errorbar(xs, means, yerr=err, marker="o", ms=4, capsize=3, color=f"C{i}", label=label)
            ax.set_xticks(np.arange(len(got)), [f"{g[0]:g}" if isinstance(g[0], float) else str(g[0]) for g in got])
        ax.set(xlabel=knob, ylabel=metric, title=f"{metric} against {knob}")
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=8)
    fig.suptitle("mean over seeds, 95% t-interval (each seed averaged over the other knobs)", fontsize=9)
    return plots.save(fig, path)
