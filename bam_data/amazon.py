"""
bam_data/amazon.py: preparing Amazon Reviews 2023 files in the official format, with their id maps and Table 1 figures.

    python cli.py prepare amazon2023 Movies_and_TV.jsonl.gz --out movies.txt
    python cli.py prepare amazon2023 All_Beauty.csv --out beauty.txt --kcore 5

Steps: read (user_id, parent_asin, timestamp); keep each user's first interaction with an item
(`--dedup`, on by default); iterative k-core filtering (every user and every item keeps at least k
interactions); sort each user's items by time, ties in file order; map ids to 1..n; write the
official format, PATH.maps.json (our id -> the original id) and print the statistics.
"""
import json
import os

import numpy as np

from bam_data import InputError, formats
from bam_data.files import atomic_text
from bam_data.dataset_stats import table1


# -----------------------------------------------------------------------------
# Filtering


def kcore(users, items, k):
    """Iterative k-core: drop interactions of users or items with fewer than k, until none is left.
    users, items: integer codes (T,). Returns the boolean mask of kept interactions (T,)."""
    keep = np.ones(len(users), dtype=bool)
    while True:
        u_count = np.bincount(users[keep], minlength=users.max() + 1)
        i_count = np.bincount(items[keep], minlength=items.max() + 1)
        drop = keep & ((u_count[users] < k) | (i_count[items] < k))
        if not drop.any():
            return keep
        keep &= ~drop


# -----------------------------------------------------------------------------
# Amazon Reviews 2023 -> the official format


def prepare_amazon2023(path, out, k=5, dedup=True):
    """-> statistics dict. Writes `out` (official format) and `out` minus extension + .maps.json."""
    formats.check_text_file(path)
    rows = formats.amazon_rows(path)                 # (user, item, time, file order)
    if not rows:
        raise InputError(f"{path}: no interactions (fix: pass the 5-core CSV or a review .jsonl)")
    rows.sort(key=lambda r: (r[0], r[2], r[3]))      # by user, then time, ties in file order
    raw = len(rows)
    if dedup:
        seen, unique = set(), []
        for r in rows:
            if (r[0], r[1]) not in seen:
                seen.add((r[0], r[1]))
                unique.append(r)
        rows = unique
    user_codes, item_codes = {}, {}
    users = np.array([user_codes.setdefault(r[0], len(user_codes)) for r in rows])   # (T,)
    items = np.array([item_codes.setdefault(r[1], len(item_codes)) for r in rows])   # (T,)
    keep = kcore(users, items, k) if k > 1 else np.ones(len(rows), dtype=bool)
    kept = [r for r, ok in zip(rows, keep) if ok]
    if not kept:
        raise InputError(f"{path}: nothing is left after {k}-core filtering (fix: a smaller --kcore)")
    seqs, user_map, item_map = formats.group_sorted(kept, path)
    formats.write_official(seqs, out)
    maps_path = os.path.splitext(out)[0] + ".maps.json"
    maps = dict(users={v: k for k, v in user_map.items()}, items={v: k for k, v in item_map.items()},
                source=os.path.abspath(path), kcore=k, dedup=dedup)
    atomic_text(maps_path, json.dumps(maps, indent=2))
    stats = table1(seqs)
    stats.update(raw_interactions=raw, after_dedup=len(rows))
    return stats, maps_path
