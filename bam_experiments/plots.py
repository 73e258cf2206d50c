"""
Plots that a person would rather look at than read: the training curve that `cli.py train` writes
beside every run (curve.png), and the file writing that the balance heatmap uses too. matplotlib,
headless (Agg).

    from bam_experiments import plots
    plots.training_curve(metrics["history"], "curve.png")
"""
import matplotlib

from bam_data.files import atomic_write

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)


def save(fig, path):
    """Atomic, like every other output: a temporary file, then a rename."""
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path


def training_curve(history, path, title=""):
    """Validation Recall@10 / nDCG@10 and the training loss against the iteration."""
    its = [h["iter"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(its, [h["recall@10"] for h in history], marker="o", ms=3, label="Recall@10")
    left.plot(its, [h["ndcg@10"] for h in history], marker="o", ms=3, label="nDCG@10")
    best = max(history, key=lambda h: h["recall@10"])
    left.axvline(best["iter"], color="grey", ls=":", lw=1, label=f"best (iter {best['iter']})")
    left.set(xlabel="iteration", ylabel="validation", title=title or "validation")
    left.legend(frameon=False)
    right.plot(its, [h["loss"] for h in history], color="C3")
    right.set(xlabel="iteration", ylabel="training loss", title="loss (mean since the last validation)")
    return save(fig, path)
