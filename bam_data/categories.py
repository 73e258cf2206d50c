"""
bam_data/categories.py: item categories for Diversity@N (bam_evidence.beyond). A categories file has one
`item category` pair per line: the item id as in the data, then one category (any token without spaces;
ComiRec gives each item one category, and so do we). Lines starting with # and blank lines are skipped.

    python cli.py data synth --out synth.txt        # also writes synth.categories.txt: each item's planted topic
    python cli.py evaluate --checkpoint runs/x/checkpoint.pt --categories synth.categories.txt --top-n 50

    from bam_data.categories import read_categories, category_codes
    mapping = read_categories("items.categories.txt")          # {item: category}
    codes = category_codes(mapping, n_items)                   # (I + 1,) int64: a code per item, -1 for none
"""
import numpy as np

from bam_data.files import atomic_text
from bam_data.formats import MAX_ID, InputError, excerpt


def read_categories(path):
    """-> {item: category}, or InputError naming the file, the line and the fix."""
    mapping, where = {}, {}
    try:
        with open(path, encoding="utf-8-sig") as f:
            for n, line in enumerate(f, 1):
                fields = line.split()
                if not fields or fields[0].startswith("#"):
                    continue
                if len(fields) != 2 or not fields[0].isdigit() or not 0 < int(fields[0]) < MAX_ID:
                    raise InputError(f"{path}:{n}: `{excerpt(line, 40)}` is not `item category` (fix: one item id "
                                     "from 1 and one category without spaces per line)")
                item, category = int(fields[0]), fields[1]
                if mapping.setdefault(item, category) != category:
                    raise InputError(f"{path}:{n}: item {item} has a second category, {excerpt(category, 20)} "
                                     f"(line {where[item]}: {excerpt(mapping[item], 20)}) (fix: one category per item)")
                where.setdefault(item, n)
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason}) (fix: save it as UTF-8)") from None
    if not mapping:
        raise InputError(f"{path}: no `item category` line (fix: one item id and its category per line)")
    return mapping


def category_codes(mapping, n_items):
    """(I + 1,) int64: the category code of each item id 0..I (codes 0, 1, ... in order of the names), -1 for
    an item without one (padding 0 always). Items beyond the catalogue are ignored."""
    names = {c: i for i, c in enumerate(sorted(set(mapping.values())))}
    codes = np.full(n_items + 1, -1, np.int64)
    for item, category in mapping.items():
        if item <= n_items:
            codes[item] = names[category]
    return codes


def write_categories(path, mapping):
    """One `item category` line per item, in item order, written whole or not at all."""
    atomic_text(path, "".join(f"{item} {mapping[item]}\n" for item in sorted(mapping)))
    return path
