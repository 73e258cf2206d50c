"""
The NumPy twin keeps bam_minimal.py's `Config`, `windows` and `train_batch` word for word: the same
source text, comments included, so that a change on one side shows here until the other follows.
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
TWINS = [("Config", "bam_numpy/config.py"), ("windows", "bam_numpy/data.py"), ("train_batch", "bam_numpy/data.py")]


def source_of(path, name):
    """The text of the top-level class or function `name` in `path`, decorators included."""
    text = (ROOT / path).read_text()
    for node in ast.parse(text).body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == name:
            lines = text.splitlines()
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            return "\n".join(lines[first - 1:node.end_lineno])
    raise AssertionError(f"{path} has no top-level {name}")


@pytest.mark.parametrize("name, twin", TWINS)
def test_twin_source_is_the_same_text(name, twin):
    torch_side, numpy_side = source_of("bam_minimal.py", name), source_of(twin, name)
    assert numpy_side == torch_side


def test_source_of_can_fail():
    """Different functions give different text, and a name that is absent is an error."""
    assert source_of("bam_numpy/data.py", "windows") != source_of("bam_numpy/data.py", "train_batch")
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
