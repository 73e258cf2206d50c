"""
bam_data/categories.py: item categories for Diversity@N (bam_evidence.beyond). A categories file has one
`item category` pair per line: the item id as in the data, then one category (any token without spaces;
ComiRec gives each item one category, and so do we). Lines starting with # and blank lines are skipped.

    python cli.py data synth --out synth.txt        # also writes synth.categories.txt: each item's planted topic
    python cli.py prepare categories ml-100k.item --data ml-100k.inter --out ml100k.categories.txt
    python cli.py prepare categories meta_Books.jsonl.gz --maps books.maps.json --out books.categories.txt

The item ids are bam's, as it reads the data: the ids of an official or per-user file (a 0-indexed
per-user file shifted by one, as the reader says), and bam's own numbering of a RecBole or Amazon file,
which `prepare categories` applies. Where an item's one category comes from:
  MovieLens (a RecBole .item file with a `class` column): the first genre listed. MovieLens lists a
      movie's genres in its fixed genre order (Action, Adventure, Animation, Children's, Comedy, ...), so
      a multi-genre movie gets the first of its genres in that order ("Animation Children's Comedy":
      Animation): deterministic, and one rule for every movie.
  Amazon Reviews 2023 metadata (meta_*.jsonl[.gz]): the leaf of the item's category path (the last of
      `categories`), as ComiRec does; an item whose path is empty has none. Spaces become `_`.
    python cli.py evaluate --checkpoint runs/x/checkpoint.pt --categories synth.categories.txt --top-n 50

    from bam_data.categories import read_categories, category_codes
    mapping = read_categories("items.categories.txt")          # {item: category}
    codes = category_codes(mapping, n_items)                   # (I + 1,) int64: a code per item, -1 for none
"""
import numpy as np

import json

from bam_data.files import atomic_text
from bam_data.formats import MAX_ID, InputError, check_text_file, excerpt, open_text


def read_categories(path):
    """-> {item: category}, or InputError naming the file, the line and the fix."""
    mapping, where = {}, {}
    try:
        with open(path, encoding="utf-8-sig") as f:
            for n, line in enumerate(f, 1):
                fields = line.split()
                if not fields or fields[0].startswith("#"):
                    continue
                if len(fields) != 2 or not (fields[0].isascii() and fields[0].isdigit() and len(fields[0]) < 11) \
                        or not 0 < int(fields[0]) < MAX_ID:  # isascii: "²" is a digit that int() refuses
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


def from_recbole_items(path, item_map):
    """A RecBole .item file -> {our item id: its first listed genre}, for the items in `item_map`
    (original token -> our id, from formats.read of the .inter file)."""
    check_text_file(path)
    mapping = {}
    with open_text(path) as f:
        names = [h.split(":")[0] for h in f.readline().rstrip("\n").split("\t")]
        if "item_id" not in names or "class" not in names:
            raise InputError(f"{path}:1: no `item_id` and `class` columns in the header (fix: a RecBole .item file "
                             "such as ml-100k.item: item_id:token ... class:token_seq)")
        i, c = names.index("item_id"), names.index("class")
        for n, line in enumerate(f, 2):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != len(names):
                raise InputError(f"{path}:{n}: {len(parts)} fields, the header has {len(names)} "
                                 "(fix: tab-separated columns as in the header)")
            genres = parts[c].split()
            if parts[i] in item_map and genres:
                mapping[item_map[parts[i]]] = genres[0]
    return mapping


def from_amazon_meta(path, item_map):
    """Amazon Reviews 2023 metadata (.jsonl or .jsonl.gz) -> {our item id: the leaf of its category path},
    for the items in `item_map` (parent_asin -> our id, from the maps that prepare amazon2023 wrote)."""
    check_text_file(path)
    mapping = {}
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                item, categories = record["parent_asin"], record.get("categories") or []
                assert isinstance(item, str) and isinstance(categories, list)
                assert all(isinstance(x, str) for x in categories)
            except (ValueError, KeyError, TypeError, AssertionError, RecursionError):
                raise InputError(f"{path}:{n}: not a metadata record with parent_asin and a list of categories "
                                 "(fix: pass the raw meta_*.jsonl of Amazon Reviews 2023)") from None
            leaf = "_".join(categories[-1].split()) if categories else ""
            if item in item_map and leaf:
                mapping[item_map[item]] = leaf
    return mapping


def read_item_maps(path):
    """The `items` map of a .maps.json that `prepare amazon2023` wrote -> {parent_asin: our id}."""
    try:
        with open(path, encoding="utf-8") as f:
            items = json.load(f)["items"]
        return {str(original): int(ours) for ours, original in items.items()}
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise InputError(f"{path}: not a .maps.json of `prepare amazon2023` (fix: pass the file it wrote beside "
                         "the data)") from None
