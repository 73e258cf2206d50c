"""
bam_data/formats.py: readers for the interaction formats that people bring, all turned into
{user: [items in time order]}. `read(path, fmt="auto")` is THE entry point: cli.py, bench.py,
`python -m bam_numpy` and bam_numpy's benchmark all read data through it.

  official    one `user item` pair per line, 1-indexed, each user's items in time order; extra
              fields (`user item rating time`) are ignored (the BaM code's format; bam_minimal's
              read_official reads it too, and tests/test_data_entry_points.py keeps the two equal)
  per-user    one line per user: `user item1 item2 ...` in time order (S3-Rec, ICLRec, ContrastVAE);
              0-indexed files (an item id 0) are shifted by one, since 0 is padding
  recbole     a RecBole atomic `.inter` file with a typed header (user_id:token item_id:token ...
              timestamp:float); rows are sorted by (user, timestamp), ties kept in file order
  amazon      Amazon Reviews 2023: the 5-core CSV (user_id,parent_asin,rating,timestamp) or a raw
              review .jsonl / .jsonl.gz; sorted by (user, timestamp), ties kept in file order

A name that ends in .gz is gunzipped first, in every format (`x.inter.gz` is RecBole, `x.csv.gz` a CSV).
String ids are mapped to integers 1..n in order of first appearance after sorting; `read` returns
the maps so that prepared files can be traced back. Text is decoded as UTF-8 with an optional byte
order mark (utf-8-sig): editors on Windows write one. Integer ids must be below 2^31, before anything
allocates an (I + 1, d) embedding table. The standard library only; never torch.

    from bam_data.formats import read
    seqs, info = read("data.txt")          # info: format, notes (and user_map, item_map for string ids)
"""
import csv
import gzip
import json
import math
import os
import zlib
from contextlib import contextmanager

from bam_data.files import atomic_text

FORMATS = ("auto", "official", "per-user", "recbole", "amazon")
BOM = b"\xef\xbb\xbf"  # UTF-8's byte order mark
MAX_ID = 1 << 31  # ids are int64 in memory, but an item id sizes the embedding table: refuse absurd ones


class InputError(ValueError):
    """Bad input. The message is one line that names the file, the line and the fix."""


# -----------------------------------------------------------------------------
# Detection: what kind of file this is


def plain_name(path):
    """The lower-case name without a .gz ending: `x.inter.gz` is a RecBole file, `x.csv.gz` a CSV."""
    return str(path).lower().removesuffix(".gz")


@contextmanager
def open_text(path):
    """The file as text, gunzipped when its name ends in .gz, for every reader. A damaged gzip stream is
    found line by line, anywhere in the file: one InputError, not EOFError or zlib.error."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", errors="replace") as f:  # -sig: a BOM is not an id
            yield f
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise InputError(f"{path}: damaged or truncated gzip ({type(e).__name__}) (fix: download it again)") from None


def printable(text):
    """`text` with each unprintable character (a control code, an unassigned code point) as `?`: what a
    file holds is echoed into one-line messages, never a terminal escape or a line break."""
    return "".join(c if c.isprintable() else "?" for c in text)


def excerpt(text, n):
    """At most `n` characters of `text` for a one-line message: each run of whitespace (a line break inside
    a quoted CSV field, a form feed) becomes one space, and other unprintable characters `?`."""
    return printable(" ".join(text.split()))[:n]


def check_text_file(path):
    """The first bytes of `path`, after the checks that every reader needs."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file (fix: check the path; `python cli.py data synth --out "
                         "synth.txt` writes an example)")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder, not a file (fix: pass the data file inside it)")
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            head = f.read(65536)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise InputError(f"{path}: damaged or truncated gzip ({type(e).__name__}) (fix: download it again)") from None
    if not head.removeprefix(BOM).strip():
        raise InputError(f"{path}: the file is empty (fix: pass a file with interactions)")
    if b"\0" in head:
        raise InputError(f"{path}:1: binary data, not text (fix: pass a text file; see docs/formats.md)")
    return head


def detect(path):
    """Guess the format from the name and the first lines."""
    head = check_text_file(path)
    name = plain_name(path)
    if name.endswith(".inter"):
        return "recbole"
    if name.endswith((".csv", ".jsonl", ".jsonl.gz", ".json")):
        return "amazon"
    lines = [ln.split() for ln in head.decode("utf-8-sig", "replace").splitlines()[:-1] if ln.strip()]
    lines = lines or [head.split()]
    # The official format repeats a user on consecutive lines (extra fields, such as a rating or a
    # time, are ignored); a per-user file never repeats one. Two fields per line are a pair either way.
    users = [ln[0] for ln in lines]
    if len(set(users)) < len(users) or all(len(ln) <= 2 for ln in lines):
        return "official"
    return "per-user"


def read(path, fmt="auto"):
    """Returns (seqs, info): seqs {int user: [int items]}, info {format, item_map, user_map, notes}."""
    fmt = detect(path) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise InputError(f"{path}: unknown format `{fmt}` (fix: one of {', '.join(FORMATS)})")
    if fmt == "official":
        seqs, info = read_official(path), dict(notes=[])
    else:
        seqs, info = dict(**{"per-user": read_per_user}, recbole=read_recbole, amazon=read_amazon)[fmt](path)
    if not seqs:  # a header alone, or lines of whitespace that is not ASCII: nothing for any command
        raise InputError(f"{path}: no interactions in the file (read as {fmt}) (fix: pass a file with interactions; "
                         "see docs/formats.md)")
    info["format"] = fmt
    return seqs, info


# -----------------------------------------------------------------------------
# Readers, one per format


def read_official(path):
    """One `user item` pair per line, 1-indexed, each user's items in time order; lines of a user
    need not be together. Extra fields are ignored, as the official reader does. -> {user: [items]}.

    Memory: the file is read line by line (reading it whole held its text twice and a string per
    line: 150 bytes per interaction at the peak, for 11 in the file), and each distinct id is parsed
    and checked once and shared by every list that holds it (a separate int per interaction was 32
    bytes of the 80 the lists took). docs/performance.md, Scaling, has the measurements."""
    check_text_file(path)
    seqs, users, items = {}, {}, {}  # users, items: token -> its checked int, one object per id
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise InputError(f"{path}:{n}: one field, expected `user item` (fix: write one pair per line)")
            user, item = users.get(parts[0]), items.get(parts[1])
            if user is None or item is None:  # a token seen for the first time: parse and check it
                user, item = _official_pair(path, n, line, parts)
                user, item = users.setdefault(parts[0], user), items.setdefault(parts[1], item)  # keep the shared one
            seqs.setdefault(user, []).append(item)
    return seqs


def _official_pair(path, n, line, parts):
    """The checked (user, item) ids of line `n`, or the InputError that names what is wrong with it."""
    try:
        user, item = int(parts[0]), int(parts[1])
    except ValueError:
        raise InputError(f"{path}:{n}: `{excerpt(line, 30)}` is not two integer ids (fix: integer ids, "
                         "e.g. map string ids with `cli.py prepare`)") from None
    if max(user, item) >= MAX_ID:
        raise InputError(f"{path}:{n}: id too large, ids must be below 2^31 (fix: map ids to 1..n, "
                         "e.g. with `cli.py prepare`)")
    if user < 0 or item < 0:
        raise InputError(f"{path}:{n}: negative id (fix: user ids are 0 or more, item ids 1 or more)")
    if item == 0:
        raise InputError(f"{path}:{n}: item id 0 is padding (fix: items are 1-indexed; add 1 to every item id)")
    return user, item


def read_per_user(path):
    check_text_file(path)
    seqs, notes = {}, []
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise InputError(f"{path}:{n}: a user with no items (fix: one line per user, `user item1 item2 ...`)")
            try:
                ids = [int(x) for x in parts]
            except ValueError:
                raise InputError(f"{path}:{n}: `{excerpt(line, 40)}` holds a non-integer id "
                                 "(fix: map string ids to integers)") from None
            if min(ids) < 0:
                raise InputError(f"{path}:{n}: negative id (fix: ids start at 0 or 1)")
            if max(ids) >= MAX_ID:
                raise InputError(f"{path}:{n}: id too large, ids must be below 2^31 (fix: map ids to 1..n, "
                                 "e.g. with `cli.py prepare`)")
            if ids[0] in seqs:
                raise InputError(f"{path}:{n}: user {ids[0]} has a second line (fix: one line per user)")
            seqs[ids[0]] = ids[1:]
    if any(0 in s for s in seqs.values()):
        # 0-indexed items (e.g. ContrastVAE's Office_Products): shift them, keeping 0 for padding.
        seqs = {u: [i + 1 for i in s] for u, s in seqs.items()}
        notes.append("item ids are 0-indexed: shifted by +1, since 0 is padding")
        if max(max(s) for s in seqs.values()) >= MAX_ID:
            raise InputError(f"{path}: item id 2^31 - 1 becomes 2^31 once 0-indexed ids are shifted by one "
                             "(fix: map ids to 1..n, e.g. with `cli.py prepare`)")
    return seqs, dict(notes=notes)


def _index(values, table):
    """Map each value to 1, 2, ... in order of first appearance."""
    return [table.setdefault(v, len(table) + 1) for v in values]


def group_sorted(rows, path):
    """rows: (user, item, time, file order) -> {user id: [item ids]} sorted by (user, time, file order).
    Returns (seqs, user_map, item_map) with 1-indexed integer ids."""
    rows.sort(key=lambda r: (r[0], r[2], r[3]))
    user_map, item_map, seqs = {}, {}, {}
    for user, item, _, _ in rows:
        seqs.setdefault(_index([user], user_map)[0], []).append(_index([item], item_map)[0])
    return seqs, user_map, item_map


def read_recbole(path):
    check_text_file(path)
    with open_text(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        names = [h.split(":")[0] for h in header]
        for col in ("user_id", "item_id"):
            if col not in names:
                raise InputError(f"{path}:1: no `{col}` column in the header (fix: a RecBole .inter file "
                                 "has a typed header such as `user_id:token item_id:token timestamp:float`)")
        u, i = names.index("user_id"), names.index("item_id")
        t = names.index("timestamp") if "timestamp" in names else None
        rows = []
        for n, line in enumerate(f, 2):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != len(names):
                if not line.strip():
                    continue
                raise InputError(f"{path}:{n}: {len(parts)} fields, the header has {len(names)} "
                                 "(fix: tab-separated columns as in the header)")
            try:
                time = float(parts[t]) if t is not None else 0.0
                assert math.isfinite(time)  # a NaN would make the sort by time meaningless
            except (ValueError, AssertionError):
                raise InputError(f"{path}:{n}: timestamp `{excerpt(parts[t], 30)}` is not a finite number "
                                 "(fix: numeric timestamps)") from None
            rows.append((parts[u], parts[i], time, n))
    seqs, user_map, item_map = group_sorted(rows, path)
    return seqs, dict(user_map=user_map, item_map=item_map, notes=[])


def amazon_rows(path):
    """(user_id, parent_asin, timestamp, file order) from the 5-core CSV or a review .jsonl(.gz)."""
    with open_text(path) as f:
        if plain_name(path).endswith(".csv"):
            return _csv_rows(path, f)
        return _jsonl_rows(path, f)


def _csv_rows(path, f):
    rows, reader = [], csv.reader(f)
    try:
        header = next(reader, [])
        need = ("user_id", "parent_asin", "timestamp")
        if not all(c in header for c in need):
            raise InputError(f"{path}:1: the header lacks {', '.join(c for c in need if c not in header)} "
                             "(fix: the 5-core CSV has user_id,parent_asin,rating,timestamp)")
        cu, ci, ct = (header.index(c) for c in need)
        for n, parts in enumerate(reader, 2):
            if not parts:
                continue
            try:
                rows.append((parts[cu], parts[ci], int(float(parts[ct])), n))
            except (ValueError, IndexError, OverflowError):
                raise InputError(f"{path}:{n}: expected user_id,parent_asin,rating,timestamp, "
                                 f"found `{excerpt(','.join(parts), 60)}`") from None
    except csv.Error as e:  # a field past csv's size limit, a NUL byte, an unclosed quote at the end
        raise InputError(f"{path}:{reader.line_num}: not a CSV row ({e}) (fix: the 5-core CSV has "
                         "user_id,parent_asin,rating,timestamp)") from None
    return rows


def _jsonl_rows(path, f):
    rows = []
    for n, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            user, item = (r[k] for k in ("user_id", "parent_asin"))
            # ids are strings: a number, a list or null among them cannot be sorted or mapped alongside
            assert isinstance(user, str) and isinstance(item, str)
            rows.append((user, item, int(r["timestamp"]), n))
        except (ValueError, KeyError, TypeError, OverflowError, AssertionError, RecursionError):
            raise InputError(f"{path}:{n}: not a review record with user_id, parent_asin (strings) and timestamp "
                             "(fix: pass the raw Amazon Reviews 2023 .jsonl)") from None
    return rows


def read_amazon(path):
    check_text_file(path)
    seqs, user_map, item_map = group_sorted(amazon_rows(path), path)
    return seqs, dict(user_map=user_map, item_map=item_map, notes=[])


# -----------------------------------------------------------------------------
# Writing the official format


def write_official(seqs, path):
    """Write {user: [items]} in the official format, atomically."""
    atomic_text(path, "".join(f"{user} {i}\n" for user, items in seqs.items() for i in items))


def remap_items(seqs):
    """Number the items 1..n in order of first appearance (users keep their ids), so that the item table has
    one row per item. -> (remapped {user: [new id, ...]}, {new id: old id})."""
    ids = {}
    remapped = {u: [ids.setdefault(i, len(ids) + 1) for i in s] for u, s in seqs.items()}
    return remapped, {new: old for old, new in ids.items()}
