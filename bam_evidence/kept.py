"""
bam_evidence/kept.py: the evidence behind a table, kept in git: every run's per-user ranks, in one compact file
per table, with what identifies each run. `cli.py report` recomputes every number of docs/results.md from
these files alone (bam_evidence/report.py), so that a reader who doubts a cell, a new statistic or the next
release can check it without the runs, which live on one machine.

    python cli.py report pack runs/table-lastfm-comirec --name lastfm-comirec --command "python cli.py table ..."
    evidence = kept.load("docs/evidence/lastfm-comirec.npz")
    evidence.runs["BaM"]                     # [per_user.PerUser], one per seed, metrics recomputed from ranks

The file (.npz, read without pickle; format "bam-evidence-1"):
  users, counts (U,) int64, targets (T,) int64   the users, their number of targets, the targets (as per_user)
  ranks (R, T) int32                             run r's 0-based rank of every target (R runs)
  identity: protocol, split, history_mask, fingerprint (strings), n_items (int)
  runs    JSON: [{method, seed, config, test, best_iter, iters, seconds, threads, code, code_history (a resumed
          run's, when its stretches ran different code)}] in the order of `ranks`
  table   JSON: {name, dataset, seeds, methods, columns, command, top_n, beyond (table.json's, per method),
          config (table.json's), protocol_title and protocol_columns (the protocol object's; absent in files
          packed before them: the report then knows the built-in protocols only)},
          and for a study's final runs (`cli.py tune`, OUT/final): kind "tune", pairs [[A, B]] (each B - A),
          grid, knobs, metric and trials [{study, method, params, value}] (the validation values of its figure)
Only the ranks are kept, not per-user metrics: those are recomputed on reading (bam_evidence.metrics), so the
file cannot disagree with itself. `pack` refuses runs that do not rank the same users' same targets, and a
run whose ranks do not give its metrics.json's test metrics.
"""
import io
import json
import os
import zipfile
from dataclasses import dataclass, field

import numpy as np

from bam_data.files import atomic_write
from bam_data.formats import InputError
from bam_evidence import metrics as metric_formulas
from bam_evidence import per_user, records

FORMAT = "bam-evidence-1"
IDENTITY = ("protocol", "split", "history_mask", "fingerprint")
STUDY_KEYS = ("kind", "pairs", "grid", "knobs", "metric", "trials")
FIX = "(fix: pack it again with `cli.py report pack TABLE_FOLDER --name NAME`)"


@dataclass
class Evidence:
    path: str
    table: dict                 # name, dataset, seeds, methods, columns, command, top_n, beyond
    runs_meta: list             # one dict per run: method, seed, config, test, best_iter, iters, seconds, threads, code
    runs: dict = field(default_factory=dict)   # {method: [per_user.PerUser] in seed order}
    protocol: str = "loo"

    def seeds(self, method):
        return [m["seed"] for m in self.runs_meta if m["method"] == method]

    def codes(self):
        """The distinct code labels ("324e5d7", "324e5d7+changes", "unknown") of the runs."""
        return sorted({code_label(m.get("code"), m.get("code_history")) for m in self.runs_meta})


def code_label(code, history=None):
    """"324e5d7", "324e5d7+changes" or "unknown" for a run's recorded `code` (None: a run of an older bam); for a run
    resumed under other code, its `code_history` in order, "1f98e6d then 34d10dc": `code` alone is the last
    stretch's, which for a run resumed only to be tested (tune's final runs) trained nothing."""
    if isinstance(history, list) and len(history) > 1:
        labels = list(dict.fromkeys(code_label(c) for c in history))
        return " then ".join(labels)
    if not isinstance(code, dict) or not code.get("commit"):
        return "unknown"
    return code["commit"][:7] + ("+changes" if code.get("dirty") else "")


# -----------------------------------------------------------------------------
# Packing a table's runs


def pack(table_dir, out, name, command="", protocols=None):
    """Read `table_dir` (a `cli.py table` folder: table.json and OUT/<method>/seed-<seed>/) and write the evidence
    file `out`. Every run's per-user file is read (its metrics checked against its ranks) and must rank the
    same users' same targets as the first; its recomputed means must be its metrics.json's test metrics.
    `protocols`: {name: (title, columns)} of the protocols the caller knows (`report pack`: the registry's); the
    runs' protocol's pair is kept in the header, so that `report` names and tests a protocol that the reporting
    process does not know, and a protocol missing from it is refused."""
    try:
        with open(os.path.join(table_dir, "table.json"), encoding="utf-8") as f:
            table = json.load(f)
        methods = list(table["runs"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{table_dir}: no readable table.json ({type(e).__name__}) (fix: pass the --out folder of a "
                         "finished `cli.py table`)") from None
    runs_meta, ranks, first = [], [], None
    for method in methods:
        for entry in table["runs"][method]:
            folder = os.path.join(table_dir, method, f"seed-{entry['seed']}")
            found = per_user.load_run(folder)
            result = records.read_result(os.path.join(folder, "metrics.json"))
            if first is None:
                first = found
            per_user.check_paired(first, found)
            if found.counts.tolist() != first.counts.tolist() or found.users.tolist() != first.users.tolist():
                raise InputError(f"{folder}: other users than {first.path} {FIX}")
            runs_meta.append(dict(method=method, seed=entry["seed"], config=result.config, test=result.test,
                                  best_iter=result.best_iter, iters=result.iters, seconds=result.seconds,
                                  threads=result.threads, code=result.code,
                                  **({"code_history": result.code_history} if result.code_history else {})))
            ranks.append(found.ranks.astype(np.int32))
    if first is None:
        raise InputError(f"{table_dir}: table.json lists no run (fix: run `cli.py table` first)")
    columns = sorted({metric_formulas.current_name(k) for k in first.metrics})
    header = dict(name=name, dataset=table.get("dataset"), seeds=table.get("seeds"), methods=methods,
                  columns=columns, command=command, top_n=top_n(table), beyond=table.get("beyond") or {},
                  config=table.get("config"))
    config = table.get("config")
    name_of = config.get("protocol") if isinstance(config, dict) else None
    if protocols is not None and name_of is not None:  # None: a table.json of an older bam, which recorded no config
        if not isinstance(name_of, str) or name_of not in protocols:
            raise InputError(f"{os.path.join(table_dir, 'table.json')}: protocol {name_of!r} is not registered in "
                             "this process (fix: pack from Python after bam_protocols.register(...): "
                             "bam_evidence.kept.pack(..., protocols={name: (title, columns)}))")
        title, protocol_columns = protocols[name_of]
        header.update(protocol_title=title, protocol_columns=list(protocol_columns))
    if table.get("kind") == "tune":  # a study's final runs (bam_tune): its pairs, and its trials for the figure
        header.update({k: table.get(k) for k in STUDY_KEYS})
    arrays = dict(format=np.str_(FORMAT), users=first.users, counts=first.counts, targets=first.targets,
                  ranks=np.stack(ranks), n_items=np.int64(first.n_items),
                  runs=np.str_(json.dumps(runs_meta, sort_keys=True)),
                  table=np.str_(json.dumps(header)),   # in its order: the methods' and columns' order is the table's
                  **{k: np.str_(getattr(first, k)) for k in IDENTITY})
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    atomic_write(out, lambda f: f.write(buffer.getvalue()))
    load(out)  # what was written reads back, every run's metrics equal to its metrics.json's
    return out


def top_n(table):
    """The N of table.json's beyond-accuracy columns (coverage@N), or 0 without them."""
    for row in (table.get("beyond") or {}).values():
        for k in row:
            if k.startswith("coverage@"):
                return int(k.split("@")[1])
    return 0


# -----------------------------------------------------------------------------
# Reading it back


def fits(users, counts, targets, ranks, n_items, header, runs_meta):
    """Whether the arrays and the JSON records of an evidence file have the shapes and types load relies on."""
    integer = all(a.dtype.kind in "iu" for a in (users, counts, targets, ranks))
    if not (integer and users.ndim == counts.ndim == targets.ndim == 1 and len(users) == len(counts)
            and isinstance(runs_meta, list) and ranks.ndim == 2 and ranks.shape == (len(runs_meta), len(targets))):
        return False
    if not ((counts >= 1).all() and counts.sum() == len(targets)
            and (ranks >= 0).all() and (ranks <= n_items + 1).all()):
        return False
    strings = (str,)
    return (isinstance(header, dict) and isinstance(header.get("columns"), list) and header["columns"]
            and all(isinstance(c, strings) for c in header["columns"])
            and isinstance(header.get("methods"), list) and all(isinstance(m, strings) for m in header["methods"])
            and all(isinstance(m, dict) and isinstance(m.get("method"), strings) and isinstance(m.get("test"), dict)
                    and isinstance(m.get("seed"), int) for m in runs_meta)
            and {m["method"] for m in runs_meta} == set(header["methods"])
            and isinstance(header.get("pairs") or [], list)
            and all(isinstance(p, list) and len(p) == 2 and set(p) <= set(header["methods"])
                    for p in header.get("pairs") or [])
            and isinstance(header.get("trials") or [], list)
            and all(isinstance(t, dict) and isinstance(t.get("params"), dict) and isinstance(t.get("value"), float)
                    and isinstance(t.get("study"), str) for t in header.get("trials") or []))


def load(path):
    """-> Evidence, every run's per-user metrics recomputed from its ranks; one InputError line for a file that
    is not one, is damaged, or whose runs' recorded test metrics are not what their ranks give."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        if str(arrays.get("format", "")) != FORMAT:
            raise ValueError("format")
        header, runs_meta = json.loads(str(arrays["table"])), json.loads(str(arrays["runs"]))
        users, counts, targets, ranks = (arrays[k] for k in ("users", "counts", "targets", "ranks"))
        n_items = int(arrays["n_items"])
        identity = {k: str(arrays[k]) for k in IDENTITY}
    except (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile) as e:
        raise InputError(f"{path}: not an evidence file of format {FORMAT} ({type(e).__name__}) {FIX}") from None
    if not fits(users, counts, targets, ranks, n_items, header, runs_meta):
        raise InputError(f"{path}: an evidence file whose arrays or records do not fit together {FIX}")
    evidence = Evidence(path, header, runs_meta, protocol=identity["protocol"])
    names = header["columns"]
    for i, meta in enumerate(runs_meta):
        try:
            values = metric_formulas.recompute(names, ranks[i].astype(np.int64), counts, targets)
        except ValueError as e:
            raise InputError(f"{path}: run {i} ({meta.get('method')}, seed {meta.get('seed')}): {e} {FIX}") from None
        for k, v in values.items():
            recorded = meta["test"].get(k)
            if not isinstance(recorded, (int, float)) or not abs(float(v.mean()) - recorded) <= 1e-9:
                raise InputError(f"{path}: {meta.get('method')} seed {meta.get('seed')}: its ranks give {k} "
                                 f"{float(v.mean()):.6f}, its recorded test metric is {recorded} {FIX}")
        run = per_user.PerUser(
            path=f"{path}#{meta['method']}/seed-{meta['seed']}", users=users.astype(np.int64),
            targets=targets.astype(np.int64), ranks=ranks[i].astype(np.int64), metrics=values, n_items=n_items,
            source=path, counts=counts.astype(np.int64), **identity)
        run.seed = meta["seed"]   # pairing is by seed: bam_evidence.differences checks the two sides agree
        evidence.runs.setdefault(meta["method"], []).append(run)
    for runs in evidence.runs.values():
        runs.sort(key=lambda r: r.seed)
    return evidence
