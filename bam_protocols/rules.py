"""
bam_protocols/rules.py: what differs between the protocols by name, in one place, so that no module outside
bam_protocols compares a protocol's name. Torch-free at import: the command line reads `label` and
`many_targets` before any model loads; the functions that need data import the protocol they name.

    from bam_protocols import rules
    rules.history_ends(cfg.protocol, data, "test")    # (U,) where each user's history ends
    rules.popularity_counts(cfg.protocol, data)       # the most-popular baseline's counts, or None: every item
"""
MANY_TARGETS = ("comirec",)   # protocols whose users have many targets (the published NDCGs are for them)


def many_targets(protocol):
    return protocol in MANY_TARGETS


def label(protocol):
    """How an evaluation line names the protocol: nothing for the reference's leave-one-out."""
    return "" if protocol == "loo" else f"{protocol}, "


def history_ends(protocol, data, split):
    """(U,) each user's history end under `protocol` for `split`: leave-one-out's from bam_minimal, ComiRec's 80%."""
    if protocol == "loo":
        import bam_minimal as bm
        return bm.split_targets(data, split)
    from bam_protocols import comirec
    return comirec.history_end(data.lengths)


def popularity_counts(protocol, data):
    """What the most-popular baseline counts: ComiRec's training users only, or None (every interaction)."""
    if protocol == "comirec":
        from bam_protocols import comirec
        return comirec.train_counts(data)
    return None
