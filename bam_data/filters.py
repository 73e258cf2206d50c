"""
bam_data/filters.py: filters applied to a dataset once it is read, before anything is built on it:
`--filter` of train, evaluate, table, balance and tune (bam_data.source.DataSource.read applies it).

  none     every interaction is kept (bam's default; bam_minimal.Dataset still skips users with fewer than 3)
  comirec  ComiRec's preprocessing (THUDM/ComiRec, preprocess/data.py, with its default filter_size 5), in
           one pass:
             1. count each item's interactions over every user, repeats included (ComiRec reads the raw
                records and never dedups);
             2. keep the items counted 5 times or more;
             3. keep the users with 5 or more interactions with those items (repeats count again), each
                with exactly those interactions, in time order.
           It filters once: an item that falls below 5 because users were dropped in step 3 stays, and is
           not counted again. So it is not a k-core (bam_data.amazon.kcore iterates until stable); the
           5-core of a dataset is always contained in its result (tests/test_filters.py).

Ids are kept as they are: bam needs no contiguous ids (the item table has a row per id up to the
largest), and kept ids leave a --categories file, the synthetic truth and every top-N list in the
file's ids. ComiRec renumbers the kept items 1..n instead, so that its catalogue holds them alone;
in bam the dropped items keep their rows, are never a history item or a target, and still take part
in the full ranking (docs/protocols.md).

    from bam_data.filters import apply
    seqs = apply(seqs, "comirec", path, notes)   # notes: a list that gets one line on what was kept
"""
from collections import Counter

from bam_data.formats import InputError

FILTERS = ("none", "comirec")
COMIREC_MIN = 5  # ComiRec's preprocess/data.py: filter_size = 5, for the items and for the users

# -----------------------------------------------------------------------------
# ComiRec's preprocessing


def comirec_filter(seqs, min_count=COMIREC_MIN):
    """{user: [items]} -> a new {user: [items]}: the items with `min_count` or more interactions in `seqs`,
    then the users left with `min_count` or more of them. One pass, as ComiRec's code (see the module's
    docstring). `seqs` is not changed; user ids, item ids and each user's order are kept."""
    counts = Counter()
    for items in seqs.values():
        counts.update(items)                   # interactions, not distinct users: a repeat counts again
    frequent = {i for i, n in counts.items() if n >= min_count}
    out = {}
    for user, items in seqs.items():
        kept = [i for i in items if i in frequent]
        if len(kept) >= min_count:             # counted after the items are dropped, before any dedup
            out[user] = kept
    return out


# -----------------------------------------------------------------------------
# The option


def apply(seqs, name, path, notes=None):
    """`seqs` filtered by `name` (one of FILTERS); with `notes`, one line on what was kept is appended to it.
    Nothing left is an InputError that names `path`."""
    if name in (None, "none"):
        return seqs
    if name != "comirec":
        raise InputError(f"{path}: unknown filter `{name}` (fix: one of {', '.join(FILTERS)})")
    out = comirec_filter(seqs)
    if not out:
        raise InputError(f"{path}: nothing is left after ComiRec's filter (items with {COMIREC_MIN}+ interactions, "
                         f"then users with {COMIREC_MIN}+ of them) (fix: more data, or leave --filter out)")
    if notes is not None:
        n_in, n_out = sum(map(len, seqs.values())), sum(map(len, out.values()))
        items_in = len({i for s in seqs.values() for i in s})
        items_out = len({i for s in out.values() for i in s})
        notes.append(f"--filter comirec kept {len(out):,} of {len(seqs):,} users, {items_out:,} of {items_in:,} "
                     f"items and {n_out:,} of {n_in:,} interactions (ComiRec's preprocessing: items with "
                     f"{COMIREC_MIN}+ interactions, then users with {COMIREC_MIN}+ of them, once)")
    return out
