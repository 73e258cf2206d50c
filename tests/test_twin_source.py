"""
The NumPy twin keeps every definition it copies from bam_minimal.py word for word: the same source text,
comments included, so that a change on one side shows here until the other follows. The copies are
listed in TWINS; every other top-level name that both define is in OWN_VERSIONS, with why the twin has
its own, and a test finds every name that both files define, so that a new copy cannot go unlisted.
bam_minimal.py is parsed as text (ast), never imported (no torch), except by the last test, which
compares the two standalone flag parsers.

    python -m pytest tests/test_twin_source.py
"""
import ast
from dataclasses import asdict
from pathlib import Path

import pytest
from conftest import bam_numpy_main

ROOT = Path(__file__).resolve().parents[1]
TWINS = [("Config", "bam_numpy/config.py"), ("CHOICES", "bam_numpy/config.py"), ("POSITIVE", "bam_numpy/config.py"),
         ("NON_NEGATIVE", "bam_numpy/config.py"), ("tau_at", "bam_numpy/config.py"),
         ("windows", "bam_numpy/data.py"), ("train_batch", "bam_numpy/data.py"),
         ("split_targets", "bam_numpy/data.py"), ("MASK", "bam_numpy/encoders.py"),
         ("metrics_from_ranks", "bam_numpy/ranking.py"), ("routing_noise", "bam_numpy/encoders.py")]
# Defined in both, on purpose not the same text: the twin's NumPy version, with its hand-written gradients.
OWN_VERSIONS = {
    "check_config": "no torch (no device=cuda check), type checks first, and SASRec is not twinned",
    "Dataset": "the twin also refuses item ids of 2^31 or more before allocating",
    "squash": "numpy, and its backward", "interest_logits": "numpy", "select_interest": "numpy",
    "item_scores": "numpy", "softmax_loss": "numpy, with its gradient", "routing_regulariser": "numpy",
    "bam_loss": "numpy, with its gradient", "model_scorer": "numpy weights, not a torch module",
    "mask_history": "numpy", "target_rank": "numpy (and a numba kernel)", "top_k": "numpy",
    "evaluate": "the numba engine", "train": "Adam by hand, no run folder", "validate": "numpy's train",
    "parse_args": "the twin's flags (--dtype, --synthetic)",
}


def definitions(path):
    """{name: source text} of the top-level classes, functions and assignments of `path`, decorators
    and the rest of an assignment's last line (its comment) included."""
    text = (ROOT / path).read_text()
    lines, out = text.splitlines(), {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names = [node.name]
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        else:
            continue
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        out.update({name: "\n".join(lines[first - 1:node.end_lineno]) for name in names})
    return out


def source_of(path, name):
    """The text of the top-level class, function or assignment `name` in `path`."""
    found = definitions(path)
    if name not in found:
        raise AssertionError(f"{path} has no top-level {name}")
    return found[name]


@pytest.mark.parametrize("name, twin", TWINS)
def test_twin_source_is_the_same_text(name, twin):
    torch_side, numpy_side = source_of("bam_minimal.py", name), source_of(twin, name)
    assert numpy_side == torch_side


# The protocols' torch side (bam_protocols) and their twins: the split and the targets, word for word; and the
# metrics, whose one copy outside the twin is the torch-free bam_evidence/metrics.py (bam_protocols imports it).
PROTOCOL_TWINS = [("bam_protocols/comirec_split.py", "bam_numpy/comirec_split.py",
                   ["SPLIT_SEED", "SPLITS", "split_rows", "history_end", "target_lists"]),
                  ("bam_evidence/metrics.py", "bam_numpy/comirec_split.py", ["KS", "user_metrics"])]


@pytest.mark.parametrize("torch_path, twin, name", [(a, b, n) for a, b, names in PROTOCOL_TWINS for n in names])
def test_protocol_twin_source_is_the_same_text(torch_path, twin, name):
    assert source_of(twin, name) == source_of(torch_path, name)


def test_every_definition_in_both_is_a_copy_or_its_own_version():
    """A name that bam_minimal.py and a bam_numpy module both define is listed: a new copy must be added
    to TWINS (and so kept equal), a new numpy version to OWN_VERSIONS."""
    reference = set(definitions("bam_minimal.py"))
    both = {name for path in sorted(ROOT.glob("bam_numpy/*.py"))
            for name in set(definitions(path.relative_to(ROOT))) & reference}
    assert both == {name for name, _ in TWINS} | set(OWN_VERSIONS)
    assert not {name for name, _ in TWINS} & set(OWN_VERSIONS)


def test_where_the_twin_defines_each_copy():
    """Each copy is defined in the module TWINS names, and nowhere else in bam_numpy."""
    for name, twin in TWINS:
        holders = [str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("bam_numpy/*.py"))
                   if name in definitions(p.relative_to(ROOT))]
        assert holders == [twin], name


def test_source_of_can_fail():
    """Different definitions give different text, an edited copy differs, and an absent name is an error."""
    assert source_of("bam_numpy/data.py", "windows") != source_of("bam_numpy/data.py", "train_batch")
    assert source_of("bam_numpy/config.py", "CHOICES").startswith("CHOICES = dict(")
    assert source_of("bam_numpy/encoders.py", "MASK").startswith("MASK = ") and "# " in source_of(
        "bam_numpy/encoders.py", "MASK")  # an assignment keeps its comment
    with pytest.raises(AssertionError, match="no top-level"):
        source_of("bam_numpy/data.py", "no_such_function")


@pytest.mark.parametrize("argv", [["--multi_loss"], ["--multi_loss=false"], ["--multi_loss=YES", "--tau=0.5"],
                                  ["--selection=hard", "--dim=32"]])
def test_both_standalone_parsers_read_flags_alike(argv, tmp_path, monkeypatch):
    """A bare --multi_loss turned the loss on in bam_minimal.py and off in `python -m bam_numpy`."""
    import bam_minimal as bm
    cfg, _, _ = bm.parse_args(["data.txt", *argv])
    path = tmp_path / "d.txt"
    path.write_text("".join(f"{u} {1 + (u * 7 + j) % 30}\n" for u in range(1, 21) for j in range(6)))
    assert asdict(bam_numpy_main([path, *argv], monkeypatch)[0]) == asdict(cfg)
