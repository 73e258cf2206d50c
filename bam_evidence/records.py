"""
bam_evidence/records.py: the schema of the files a run writes, each defined once, with a version; and the first
of them, a run's result (metrics.json). bam_runs/records.py defines the other two on the same base: a checkpoint
(checkpoint.pt) and the resume state (last.pt).

A record is a dataclass: its fields are the file's keys, their annotations the values' types. The file carries
`schema: "<name>/<version>"` beside them.
  writing  `Kind.build(**values)` fills a record once, from every field: a value the record has no field for, or a
           field without a value, is a bug in the writer and fails there (RecordError), before anything is written
  reading  `Kind.from_dict(raw, path)` checks every field and its type; a foreign file, another version, a
           missing, unknown or mistyped field is one line (InputError) that names the file, the field and the fix
  legacy   a file written before records had versions (no `schema` key) is read as before: the fields of
           LEGACY must be there, any other may be missing (its default, or None), and keys no field knows
           are ignored. A released checkpoint or a run folder of an older bam reads without rewriting it

    from bam_evidence import records
    result = records.read_result("runs/x/metrics.json")      # -> Result, checked; one line when it is not
    result.test["recall@20"], result.config["seed"], result.data.fingerprint

Torch-free (the checker takes any class to check a value against: bam_runs adds torch.Tensor).
"""
import json
import types
import typing
from dataclasses import MISSING, dataclass, fields, is_dataclass
from typing import ClassVar

from bam_data.formats import InputError, printable
from bam_evidence import metrics as formulas

# -----------------------------------------------------------------------------
# Checking a value against its annotation


class RecordError(TypeError):
    """A writer filled a record with a value of no field, without a field, or of the wrong type: a bug in bam, not
    bad input, so it is not one line but a traceback that points to the writer."""


def kind_name(kind):
    """An annotation in words, for the error line: `int`, `dict of str to float`, `list`, `str or None`."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return " or ".join(kind_name(k) for k in typing.get_args(kind))
    if kind is type(None):
        return "None"
    args = typing.get_args(kind)
    if typing.get_origin(kind) is dict and args:
        return f"a dict of {kind_name(args[0])} to {kind_name(args[1])}"
    if typing.get_origin(kind) is list and args:
        return f"a list of {kind_name(args[0])}"
    return getattr(kind, "__name__", str(kind))


def conforms(value, kind):
    """Whether `value` is of the annotation `kind`: a class, `X | None`, `dict[K, V]` or `list[X]`. JSON has one
    kind of number, so an int stands for a float; a bool is neither (True is no iteration count)."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return any(conforms(value, k) for k in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is dict:
        return isinstance(value, dict) and all(conforms(k, args[0]) and conforms(v, args[1])
                                               for k, v in value.items())
    if origin is list:
        return isinstance(value, list) and all(conforms(v, args[0]) for v in value)
    return isinstance(value, kind)


def default_of(f):
    """A field's default (its factory's value), or None when it has none: what a legacy file lacking it reads as."""
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else None

# -----------------------------------------------------------------------------
# The base of every record


@dataclass
class Record:
    """A versioned record. A subclass is a dataclass and sets SCHEMA ("bam-result"), VERSION, FILE (its file's
    name, for the messages), LEGACY (the fields an unversioned file must have), FIX (what to do with a file
    that is refused) and, where it is not the data layer's, the InputError class to raise (ERROR). A field whose
    annotation is another dataclass (a nested record, or bam_minimal.TrainState) is checked field by field and
    read back as that class."""
    SCHEMA: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1
    FILE: ClassVar[str] = ""
    LEGACY: ClassVar[tuple] = ()
    FIX: ClassVar[str] = "rerun with --fresh"
    ERROR: ClassVar[type] = InputError  # bam_runs' records raise the reference's, as the rest of bam_runs does

    @classmethod
    def tag(cls):
        return f"{cls.SCHEMA}/{cls.VERSION}"

    @classmethod
    def build(cls, **values):
        """The record of `values`, every field given once: the one way a writer fills it."""
        unknown, missing = values.keys() - names(cls), names(cls) - values.keys()
        if unknown or missing:
            raise RecordError(f"{cls.FILE}: the writer gave {sorted(unknown) or 'no unknown field'} and left out "
                              f"{sorted(missing) or 'no field'} of {cls.tag()} ({cls.__module__}.{cls.__name__})")
        for f in fields(cls):
            if not conforms(values[f.name], f.type):
                raise RecordError(f"{cls.FILE}: the writer gave {f.name}={printable(repr(values[f.name]))[:60]}, "
                                  f"not {kind_name(f.type)} ({cls.tag()})")
        return cls(**values)

    def to_dict(self):
        """The file's contents: `schema` first, then every field (a nested record as a dict). Shallow: the weights
        in a checkpoint are not copied."""
        return dict(schema=self.tag(), **{f.name: plain(getattr(self, f.name)) for f in fields(self)})

    @classmethod
    def from_dict(cls, raw, path):
        """The record of a file's contents `raw`, checked; one InputError line that names `path` when it is not
        one (bam_runs reads checkpoint.pt and last.pt with torch, metrics.json is JSON: read_result)."""
        if not isinstance(raw, dict):
            raise cls.refused(path, f"holds {type(raw).__name__}, not a {cls.SCHEMA} record")
        schema = raw.get("schema")
        if schema is not None and schema != cls.tag():
            raise cls.refused(path, other_schema(schema, cls))
        return cls.upgraded(checked(cls, raw, path, legacy=schema is None, top=cls))

    @classmethod
    def upgraded(cls, record):
        """What reading changes in a record of an older bam (Result: the old names of metrics); by default nothing."""
        return record

    @classmethod
    def refused(cls, path, why):
        return cls.ERROR(f"{path}: {why} (fix: {cls.FIX})")


def names(kind):
    return {f.name for f in fields(kind)}


def plain(value):
    """A nested record (a dataclass, also in a list) as its dict, for the file; any other value as it is."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    return [plain(v) for v in value] if isinstance(value, list) else value


def other_schema(schema, cls):
    """Why a file of another schema is refused, in words."""
    name, _, version = str(schema).partition("/")
    if name != cls.SCHEMA:
        return f"a {printable(str(schema))[:40]} record, not {cls.SCHEMA} (not a run's {cls.FILE})"
    newer = version.isdigit() and int(version) > cls.VERSION
    return (f"written by {'a newer' if newer else 'another'} bam ({printable(str(schema))[:40]}); this bam reads "
            f"{cls.tag()}")


def checked(kind, raw, path, legacy, top, where=""):
    """An instance of the dataclass `kind` from the dict `raw`, each field checked against its annotation (a
    nested dataclass recursively; `where` prefixes its fields' names in the messages), in a file of the record
    `top`. A current file holds exactly the fields; a legacy one (no `schema`) at least top.LEGACY, the other
    fields reading as their defaults (None where they have none)."""
    if not isinstance(raw, dict):
        raise top.refused(path, f"`{where[:-1]}` is {type(raw).__name__}, not a record of fields")
    # A legacy file is read as the bam before records read it: its own LEGACY fields at the top and in a nested
    # record that declares them (RunData, Generators); a nested class that declares none (bam_minimal.TrainState,
    # which an older bam rebuilt with TrainState(**saved)) exactly, neither lacking nor adding a field.
    lenient = legacy and (not where or getattr(kind, "LEGACY", None) is not None)
    unknown = [] if lenient else sorted(str(k) for k in raw.keys() - names(kind) - {"schema"})
    required = names(kind) if not lenient else set(top.LEGACY if not where else kind.LEGACY)
    missing = [f.name for f in fields(kind) if f.name in required and f.name not in raw]
    if missing or unknown:  # a field renamed in a writer is both: say so in one line
        named = [f"no field `{where}{missing[0]}`"] if missing else []
        named += [f"an unknown field `{where}{printable(unknown[0])[:40]}`"] if unknown else []
        raise top.refused(path, f"{' and '.join(named)} in a {top.tag()} record"
                          + (" (of an older bam, without a schema)" if legacy else ""))
    return kind(**{f.name: read_value(f.type, raw[f.name], path, legacy, top, f"{where}{f.name}") if f.name in raw
                   else default_of(f) for f in fields(kind)})


def read_value(kind, value, path, legacy, top, name):
    """A field's value checked against its annotation `kind`: a nested dataclass (or a list of them) read field by
    field, any other value checked whole (conforms)."""
    if is_dataclass(kind):
        return checked(kind, value, path, legacy, top, f"{name}.")
    item = typing.get_args(kind)[0] if typing.get_origin(kind) is list else None
    if is_dataclass(item) and isinstance(value, list):
        return [checked(item, v, path, legacy, top, f"{name}[{i}].") for i, v in enumerate(value)]
    if not conforms(value, kind):
        raise top.refused(path, f"`{name}` is {printable(repr(value))[:40]}, not {kind_name(kind)}")
    return value

# -----------------------------------------------------------------------------
# A run's result: metrics.json


@dataclass
class RunData:
    """The data a run was made on: bam_minimal.finish's `data`, and its fingerprint (bam_runs.run_folder)."""
    LEGACY: ClassVar[tuple] = ()    # an older bam read only data.get("fingerprint")
    name: str
    users: int
    items: int
    interactions: int
    skipped_users: int
    fingerprint: str | None         # "v2:..."; None (or "v1"'s hex) in a run of an older bam: refused on reuse


Metrics = dict[str, float]  # {"recall@20": ..., "ndcg@20": ..., "nonfinite_users": 0}


@dataclass
class Result(Record):
    """metrics.json: a finished run's result. bam_minimal.finish gives the test and the loop's record; the run
    folder (bam_runs.run_folder.RunFolder.finish) adds what the reference knows nothing of, and writes it once."""
    SCHEMA: ClassVar[str] = "bam-result"
    VERSION: ClassVar[int] = 1
    FILE: ClassVar[str] = "metrics.json"
    LEGACY: ClassVar[tuple] = ("config", "test")  # what bam read back before the schema
    FIX: ClassVar[str] = "delete it, or rerun with --fresh; the run resumes from last.pt"
    # from bam_minimal.finish
    test: Metrics                   # the best checkpoint's test metrics (with the published NDCGs of --ndcg-as)
    valid: dict[str, float | None]  # its validation metrics
    iters: int                      # iterations trained
    best_iter: int                  # the best checkpoint's iteration
    seconds: float                  # training time
    config: dict                    # bam_minimal.Config as a dict (bam_runs.run_folder.with_defaults adds new fields)
    history: list[dict]             # one dict per validation: iter, loss, seconds and the metrics
    data: RunData
    device: str                     # "cpu", "cuda"
    torch: str                      # torch.__version__
    finished: bool
    # from the run folder
    code: dict                      # {commit, dirty, mixed}: the code that trained the last stretch
    code_history: list[dict] | None  # every code version that trained it, when resumed under another; else None
    validation: dict                # {users, how}: what `valid` was measured on
    world_size: int                 # torchrun's processes (1 without it)
    threads: int | None             # torch threads, recorded by `table` and `tune` (numbers depend on it)
    mostpop: Metrics | None         # the most-popular baseline's test metrics (`train`); None from `table`

    @classmethod
    def upgraded(cls, record):
        """`ndcg@N (comirec)` of an older bam is `ndcg@N (comirec-paper)`, the formula it is."""
        record.test = {formulas.current_name(k): v for k, v in (record.test or {}).items()}
        return record


def read_result(path):
    """metrics.json -> Result, checked: one InputError line when it is truncated, not JSON, not a run's result,
    of another version or lacks a field."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (ValueError, UnicodeDecodeError):
        raise Result.refused(path, "damaged or not a run's metrics.json") from None
    return Result.from_dict(raw, path)
