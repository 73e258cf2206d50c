"""
Plots that a person would rather look at than read: the training curve that `cli.py train` writes
beside every run (curve.png), and the file writing that the balance heatmap uses too. matplotlib,
headless (Agg).

    from bam_experiments import plots
    plots.training_curve(metrics["history"], "curve.png")
    plots.forest(table_json["differences"], "forest.png")   # the rows of bam_evidence.differences
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


def forest(rows, path, per_row=4):
    """One panel per metric, `per_row` panels a row; in each panel a line per pair B - A (bam_evidence.differences
    rows): the primary 95% interval over seeds and users (black, thick; a filled dot where Holm's verdict says
    one is ahead), over seeds only (grey) and over users only (blue) below it."""
    pairs = list(dict.fromkeys(f"{r['b']} - {r['a']}" for r in rows))
    columns = list(dict.fromkeys(r["metric"] for r in rows))
    n, cols = -(-len(columns) // per_row), min(per_row, len(columns))
    fig, axes = plt.subplots(n, cols, figsize=(3.2 * cols, (0.6 * len(pairs) + 1.4) * n), sharey=True,
                             squeeze=False)
    for ax, c in zip(axes.ravel(), columns):
        for r in (r for r in rows if r["metric"] == c):
            i = pairs.index(f"{r['b']} - {r['a']}")
            if r["low"] is not None:
                ax.plot([r["low"], r["high"]], [i - 0.2] * 2, color="black", lw=3)
            ahead = r.get("verdict", "").endswith("ahead")
            ax.plot(r["diff"], i - 0.2, "o", color="black", ms=5, mfc="black" if ahead else "white")
            if r["seeds_low"] is not None:
                ax.plot([r["seeds_low"], r["seeds_high"]], [i] * 2, color="grey", lw=1.5)
            users = r.get("by_users") or {}
            if users.get("ci_low") is not None:
                ax.plot([users["ci_low"], users["ci_high"]], [i + 0.2] * 2, color="C0", lw=1.5)
        ax.axvline(0, color="grey", ls=":", lw=1)
        ax.set(title=c.replace("ndcg", "nDCG").replace("recall", "Recall").replace("hitrate", "HitRate"),
               xlabel="B - A")
        ax.locator_params(axis="x", nbins=4)
    for ax in axes.ravel()[len(columns):]:  # the last row's empty places
        ax.set_visible(False)
    axes[0, 0].set_yticks(range(len(pairs)), pairs)
    axes[0, 0].set_ylim(len(pairs) - 0.5, -0.5)  # the first pair on top, each pair's three intervals together
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.1 / n))
    fig.suptitle("95% intervals of B - A: seeds and users (black; filled: ahead after Holm), seeds only (grey), "
                 "users only (blue)", fontsize=8)
    return save(fig, path)
