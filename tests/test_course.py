"""
Tests of the course kit (bam_course, `python cli.py course ...`). Everything is generated here
from the bam_minimal.py at the repository root: the kit, the student skeletons, files with planted
bugs. About two minutes on one thread; the end-to-end part runs once (on the reference).

    OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python -m pytest -q tests/test_course.py
"""
import ast
import json
import os
import shutil
import textwrap
import time

import numpy as np
import pytest
from click.testing import CliRunner

import cli
from bam_course import common, e2e, grader, skeleton, spec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(ROOT, "bam_minimal.py")
FUNCTION_PARTS = [p.key for p in spec.parts_of("torch") if p.target]


def invoke(*args):
    return CliRunner().invoke(cli.cli, ["course", *args], catch_exceptions=False)


def by_name(tests):
    return {t.name: t for t in tests}


def with_appended(tmp_path, name, code):
    """bam_minimal.py with `code` appended: later definitions replace the reference's at import."""
    path = tmp_path / name
    with open(REFERENCE) as f:
        path.write_text(f.read() + "\n\n" + textwrap.dedent(code))
    return str(path)


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    out = tmp_path_factory.mktemp("kit")
    result = invoke("make", "--out", str(out), "--track", "numpy")
    assert result.exit_code == 0, result.output
    return out

# -----------------------------------------------------------------------------
# course make: the skeletons


def test_make_writes_the_kit(kit):
    for name in ("bam_student.py", "bam_numpy_student.py", "HANDOUT.md", "public_vectors.npz",
                 "gradescope/run_autograder", "gradescope/setup.sh"):
        assert (kit / name).is_file(), name
    with np.load(kit / "public_vectors.npz", allow_pickle=False) as z:
        assert {k.split("/")[0] for k in z.files} == {p.key for p in spec.PARTS if p.target}
    handout = (kit / "HANDOUT.md").read_text()
    assert "imports and runs your code" in handout and "subprocess" in handout and "time limit" in handout
    assert "neither imported, nor patched in, nor importable" in " ".join(handout.split())
    for part in spec.PARTS:
        assert f"Part {part.number}: `{part.key}`" in handout
    assert os.access(kit / "gradescope" / "run_autograder", os.X_OK)


def signature(node):
    return ast.unparse(node.args)


def functions(tree):
    """qualified name -> FunctionDef, methods as Class.method."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = node
        elif isinstance(node, ast.ClassDef):
            out.update({f"{node.name}.{m.name}": m for m in node.body if isinstance(m, ast.FunctionDef)})
    return out


def test_skeleton_keeps_signatures_and_everything_else(kit):
    with open(REFERENCE) as f:
        source = f.read()
    student = (kit / "bam_student.py").read_text()
    ref_fns, st_fns = functions(ast.parse(source)), functions(ast.parse(student))
    assert set(ref_fns) == set(st_fns)
    for part in spec.parts_of("torch"):
        if part.target:
            node = st_fns[part.target]
            assert signature(node) == signature(ref_fns[part.target])
            assert ast.get_docstring(node), part.target
            text = ast.get_source_segment(student, node)
            assert f'raise NotImplementedError("Part {part.number}:' in text and "# TODO:" in text
    # every line outside the blanked bodies survives, comments included, in order
    _, removed = skeleton.blank(source, spec.parts_of("torch"), "bam_minimal.py")
    kept = source
    for body in removed.values():
        kept = kept.replace(body, "", 1)
    it = iter([s for s in student.splitlines() if s.strip()])
    for line in (k for k in kept.splitlines() if k.strip()):
        assert any(line == s for s in it), f"lost line: {line!r}"


def distinctive(removed, elsewhere):
    """The lines of a removed body that appear nowhere else in the reference."""
    return [line.strip() for line in removed.splitlines()
            if len(line.strip()) > 12 and line.strip() not in elsewhere and not line.strip().startswith("#")]


@pytest.mark.parametrize("track", ["torch", "numpy"])
def test_no_solution_text_in_the_skeletons(kit, track):
    if track == "torch":
        with open(REFERENCE) as f:
            source = f.read()
        _, removed = skeleton.blank(source, spec.parts_of("torch"), "bam_minimal.py")
        student = (kit / "bam_student.py").read_text()
        rest = source
        for body in removed.values():
            rest = rest.replace(body, "", 1)
    else:
        removed, rest = {}, ""
        for part in spec.parts_of("numpy"):
            with open(os.path.join(ROOT, part.source)) as f:
                src = f.read()
            _, cut = skeleton.blank(src, [part], part.source)
            removed.update(cut)
            rest += src.replace(cut[part.key], "", 1)
        student = (kit / "bam_numpy_student.py").read_text()
    assert removed
    for key, body in removed.items():
        lines = distinctive(body, rest)
        assert lines, key  # else this test could not fail
        leaked = [line for line in lines if line in student]
        assert not leaked, f"{key}: {leaked}"


def test_make_blanks_only_the_parts_asked_for(tmp_path):
    assert invoke("make", "--out", str(tmp_path), "--parts", "target_rank").exit_code == 0
    student = (tmp_path / "bam_student.py").read_text()
    assert 'NotImplementedError("Part 6:' in student and 'NotImplementedError("Part 2:' not in student
    assert not (tmp_path / "bam_numpy_student.py").exists()

# -----------------------------------------------------------------------------
# course grade: the reference, the skeleton, planted bugs


def test_reference_gets_full_marks_with_gradescope_json(tmp_path):
    out = tmp_path / "results.json"
    result = invoke("grade", REFERENCE, "--json", str(out), "--seed", "3")
    assert result.exit_code == 0, result.output
    res = json.loads(out.read_text())
    top = sum(p.max_points for p in spec.parts_of("torch"))
    assert res["score"] == top, result.output
    assert sum(t["max_score"] for t in res["tests"]) == top
    keys = {p.key for p in spec.parts_of("torch")}
    for t in res["tests"]:
        assert set(t) >= {"name", "score", "max_score", "output"}
        assert t["name"].split(":")[0] in keys
    assert "train: BaM beats most popular" in {t["name"] for t in res["tests"]}


def test_skeleton_scores_zero_without_crashing_the_grader(kit, tmp_path):
    out = tmp_path / "results.json"
    result = invoke("grade", str(kit / "bam_student.py"), "--json", str(out), "--seed", "4")
    assert result.exit_code == 0, result.output
    res = json.loads(out.read_text())
    assert res["score"] == 0 and len(res["tests"]) == sum(len(p.points) for p in spec.parts_of("torch"))
    for t in res["tests"]:
        assert "not implemented" in t["output"], t


def numpy_solved(path, extra=""):
    """A NumPy-track file with the reference's bodies and their helpers written out in it (bam_numpy is not
    importable while it is graded)."""
    imports, shared, blocks = set(), [], []
    for part in spec.parts_of("numpy"):
        with open(os.path.join(ROOT, part.source)) as f:
            source = f.read()
        node = skeleton.find(ast.parse(source), part.target, part.source)
        outside, needed = skeleton.helpers(ROOT, part)
        imports |= outside
        shared += [b for b in needed if b not in shared]
        blocks.append(ast.get_source_segment(source, node))
    path.write_text(skeleton.import_block(imports) + "\n\n" + "\n\n\n".join(shared + blocks) + "\n"
                    + textwrap.dedent(extra))
    return str(path)


def test_numpy_track_skeleton_zero_and_reference_full(kit, tmp_path):
    tests, info = grader.grade(str(kit / "bam_numpy_student.py"), seed=2)
    assert info["track"] == "numpy" and sum(t.score for t in tests) == 0 and len(tests) == 4
    tests, _ = grader.grade(numpy_solved(tmp_path / "np_solved.py"), seed=2)
    assert all(t.score == t.max_score for t in tests), [t.output for t in tests]
    wrapper = tmp_path / "np_reference.py"   # calls bam_numpy's own backward passes: the answer key
    wrapper.write_text("from bam_numpy import encoders, loss\n\n\n"
                       "def softmax_loss_backward(pos, neg, beta, d_loss):\n"
                       "    return loss.softmax_loss_backward(pos, neg, beta, d_loss)\n\n\n"
                       "def comirec_backward(params, cache, d_interests, d_attention=None):\n"
                       "    return encoders.comirec_backward(params, cache, d_interests, d_attention)\n")
    tests, _ = grader.grade(str(wrapper), seed=2)
    assert all(t.score == 0 and "answer key" in t.output for t in tests), [t.output for t in tests]


def test_finite_difference_directions_stay_in_the_grader(tmp_path):
    path = numpy_solved(tmp_path / "peek.py", """
        import sys as _sys
        with np.load(_sys.argv[3], allow_pickle=False) as _z:   # the cases file the runner reads
            if any("/dirs/" in _k for _k in _z.files):
                raise RuntimeError("the directions leaked")
        """)
    tests = grader.grade(path, seed=5, parts="softmax_loss_backward")[0]
    assert all(t.score == t.max_score for t in tests), [t.output for t in tests]


NUMERICAL = """
def _f(p, n, beta):  # the student's own forward pass (bam_numpy is not importable while grading)
    if beta:
        z = beta * n
        n = n + np.log(n.shape[-1]) + z - (np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True))
                                           + z.max(-1, keepdims=True))
    x = np.concatenate([p[..., None], n], -1)
    m = x.max(-1, keepdims=True)
    return (np.log(np.exp(x - m).sum(-1, keepdims=True)) + m)[..., 0] - p


def softmax_loss_backward(pos, neg, beta, d_loss):
    f = lambda p, n: (d_loss * _f(p, n, beta)).sum()
    def num(x, g):
        out = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            xp, xm = x.copy(), x.copy()
            xp[i] += 1e-6
            xm[i] -= 1e-6
            out[i] = (g(xp) - g(xm)) / 2e-6
        return out
    return num(pos, lambda p: f(p, neg)), num(neg, lambda n: f(pos, n))
"""


def test_numerical_gradients_run_past_the_time_limit(tmp_path):
    path = tmp_path / "numerical.py"
    path.write_text("import numpy as np\n" + NUMERICAL)
    tests = grader.grade(str(path), seed=5, parts="softmax_loss_backward", timeout=8)[0]
    assert all(t.score == 0 and "timed out" in t.output for t in tests), [t.output for t in tests]


def test_numpy_track_bug_fails_golden_and_finite_differences(tmp_path):
    bug = numpy_solved(tmp_path / "np_bug.py", """
        _comirec_backward = comirec_backward


        def comirec_backward(params, cache, d_interests, d_attention=None):
            cache = dict(cache, a1=cache['a1'] * 0 + 0.5)  # BUG: tanh' taken at the wrong point
            return _comirec_backward(params, cache, d_interests, d_attention)
        """)
    tests = by_name(grader.grade(bug, seed=6, parts="comirec_backward")[0])
    assert tests["comirec_backward: golden"].score == 0
    assert tests["comirec_backward: finite differences"].score == 0
    assert "fd/" in tests["comirec_backward: finite differences"].output


BUGS = '''
import math as _math


def _forward_over_interests(self, history, mask, noise=None):
    h = self.embeddings(history) * mask[..., None]
    logits = self.linear2(self.linear1(h + self.position_embedding))
    logits = logits.masked_fill(mask[..., None] == 0, -2.0 ** 32 + 1)
    attention = logits.softmax(-1).transpose(1, 2)          # BUG: softmax over the N interests
    return attention @ h, attention


ComiRecSA.forward = _forward_over_interests


def select_interest(logits, selection, tau, u):
    probs = torch.softmax(tau * logits, -1)
    return logits.argmax(-1), probs                          # BUG: the argmax for bam too


def bam_loss(model, cfg, interests, attention, target, negatives, u, tau):
    item_emb = model.embeddings.weight
    logits = (interests @ item_emb[target].detach()[..., None])[..., 0]
    index, probs = select_interest(logits, cfg.selection, tau, u)
    if cfg.selection == "expected":
        pos, neg = item_scores(interests, target, negatives, item_emb, cfg.loss)
        loss = (probs.detach() * softmax_loss(pos, neg, cfg.remi_beta)).mean(-1)   # BUG: mean over N
    else:
        chosen = interests[torch.arange(len(index)), index]
        pos, neg = item_scores(chosen[:, None], target, negatives, item_emb, cfg.loss)
        loss = softmax_loss(pos, neg, cfg.remi_beta)[:, 0]
    if cfg.multi_loss:
        pos, neg = item_scores(interests, target, negatives, item_emb, cfg.loss)
        loss = loss + softmax_loss(pos.logsumexp(1), neg.logsumexp(1), cfg.remi_beta)
    loss = loss.mean()
    if cfg.remi_lambda:
        loss = loss + cfg.remi_lambda * routing_regulariser(attention, cfg.dim)
    return loss


def mask_history(scores, full_history, window, mode):
    if mode == "official":
        return scores.scatter_(1, window, 0.0)
    scores[:, 0] = -_math.inf                                  # BUG: exclude leaves the history unmasked
    return scores


def target_rank(scores, target):
    scores = torch.nan_to_num(scores, nan=_math.inf, posinf=_math.inf, neginf=-_math.inf)  # NaN: above, like +inf
    s = scores.gather(1, target[:, None])
    ids = torch.arange(scores.shape[1])
    above = (scores > s) | ((scores == s) & (ids > target[:, None]))    # BUG: ties, higher id first
    return torch.where(torch.isfinite(s[:, 0]), above.sum(1), scores.shape[1])


def metrics_from_ranks(rank, ks=(10, 20)):
    rank = np.asarray(rank, dtype=np.float64)
    out = {}
    with np.errstate(divide="ignore"):
        for k in ks:
            hit = rank < k
            out[f"recall@{k}"] = float(hit.mean())
            out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(rank + 1), 0.0).mean())   # BUG: log2(rank + 1)
    return out
'''


@pytest.fixture(scope="module")
def graded_bugs(tmp_path_factory):
    path = with_appended(tmp_path_factory.mktemp("bugs"), "bugs.py", BUGS)
    return by_name(grader.grade(path, parts=",".join(FUNCTION_PARTS), seed=11)[0])


# function, the subtests its bug breaks, words of the hint, its subtests that stay at full marks
PLANTED = [
    ("ComiRecSA", ["attention", "interests"], "softmax over the N interests", []),
    ("select_interest", ["bam"], "you took the argmax", ["hard"]),
    ("bam_loss", ["expected"], "averaged the loss over the N interests", ["hard", "bam", "extras"]),
    ("mask_history", ["exclude"], "history left unmasked", ["official", "none"]),
    ("target_rank", ["ties"], "ties broken the other way", ["distinct", "non-finite"]),
    ("metrics_from_ranks", ["ndcg"], "log2(r + 2)", ["recall"]),
]


def test_gradient_hint_only_when_the_values_are_right(graded_bugs):
    # the forward's values are wrong (softmax over N): "the values are right" would mislead
    out = graded_bugs["ComiRecSA: gradients"].output
    assert graded_bugs["ComiRecSA: gradients"].score == 0 and "values are right" not in out, out
    assert "fix attention and interests first" in out, out


def test_overflow_and_one_based_rank_get_their_hints(tmp_path):
    path = with_appended(tmp_path, "hints.py", """
        def softmax_loss(pos, neg, beta=0.0):
            return torch.cat([pos[..., None], neg], -1).exp().sum(-1).log() - pos    # BUG: overflows


        _target_rank = target_rank


        def target_rank(scores, target):
            rank = _target_rank(scores, target)
            return torch.where(rank < scores.shape[1], rank + 1, rank)                  # BUG: 1-based
        """)
    tests = by_name(grader.grade(path, parts="softmax_loss,target_rank", seed=11)[0])
    assert tests["softmax_loss: sampled"].score == 0 and "torch.logsumexp" in tests["softmax_loss: sampled"].output
    for sub in ("distinct", "ties", "non-finite"):
        t = tests[f"target_rank: {sub}"]
        assert t.score == 0 and "ranks are 0-based" in t.output, t.output


def test_a_near_miss_prints_enough_digits_and_the_error():
    msg = common.first_wrong("loss", np.array([1.0, 1.00001]), np.array([1.0, 1.0]), 1e-6, 1e-9)
    assert "1.00001" in msg and "abs error 1e-05" in msg and "rtol 1e-06" in msg, msg
    assert "rank[0] = 3, expected 2" in common.first_wrong("rank", np.array([3]), np.array([2]), 0, 0)


@pytest.mark.parametrize("key, broken, hint, intact", PLANTED, ids=[p[0] for p in PLANTED])
def test_planted_bug_costs_its_own_points_with_a_hint(graded_bugs, key, broken, hint, intact):
    for sub in broken:
        t = graded_bugs[f"{key}: {sub}"]
        assert t.score == 0, t
        assert "hint: " in t.output and hint in t.output, t.output
    for sub in intact:  # the same file's other bugs do not leak into these (the grader patches them out)
        graded = graded_bugs[f"{key}: {sub}"]
        assert graded.score == graded.max_score, graded


def test_a_function_without_a_bug_keeps_full_marks_beside_buggy_ones(graded_bugs):
    for name, t in graded_bugs.items():
        if name.startswith("softmax_loss:"):
            assert t.score == t.max_score, t

# -----------------------------------------------------------------------------
# Robustness: hangs, crashes, garbage, syntax errors, bad paths


def test_endless_loop_is_timed_out_and_the_rest_is_graded(tmp_path):
    path = with_appended(tmp_path, "loop.py", """
        def target_rank(scores, target):
            while True:
                pass
        """)
    tests = by_name(grader.grade(path, parts="target_rank,metrics_from_ranks", seed=1, timeout=6)[0])
    for sub in ("distinct", "ties", "non-finite"):
        assert tests[f"target_rank: {sub}"].score == 0 and "timed out" in tests[f"target_rank: {sub}"].output
    assert all(t.score == t.max_score for n, t in tests.items() if n.startswith("metrics_from_ranks"))


def test_garbage_and_crashes_score_zero_with_the_reason(tmp_path):
    path = with_appended(tmp_path, "garbage.py", """
        import os as _os


        def select_interest(logits, selection, tau, u):
            return "index", "probs"


        def mask_history(scores, full_history, window, mode):
            _os._exit(3)


        _softmax_loss = softmax_loss


        def softmax_loss(pos, neg, beta=0.0):
            print("garbage " * 1000)                     # printing is harmless
            return _softmax_loss(pos, neg, beta)
        """)
    tests = by_name(grader.grade(path, parts="select_interest,mask_history,softmax_loss", seed=1)[0])
    assert tests["select_interest: bam"].score == 0 and "expected numbers" in tests["select_interest: bam"].output
    assert tests["mask_history: exclude"].score == 0 and "exited with code 3" in tests["mask_history: exclude"].output
    assert all(t.score == t.max_score for n, t in tests.items() if n.startswith("softmax_loss"))


def test_syntax_error_scores_zero_with_the_error(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("def select_interest(logits, selection, tau, u:\n    return 1\n")
    out = tmp_path / "r.json"
    result = invoke("grade", str(bad), "--json", str(out), "--parts", "select_interest,target_rank")
    assert result.exit_code == 0, result.output
    res = json.loads(out.read_text())
    assert res["score"] == 0 and all("SyntaxError" in t["output"] and "line 1" in t["output"] for t in res["tests"])


def test_bad_paths_exit_2_with_one_line(tmp_path):
    binary = tmp_path / "binary.py"
    binary.write_bytes(b"\x7fELF\x00\x01")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    for path in (tmp_path / "missing.py", tmp_path, text, binary):
        result = invoke("grade", str(path))
        assert result.exit_code == 2, (path, result.output)
        assert "Traceback" not in result.output and result.output.strip().count("\n") == 0, result.output
        assert result.output.startswith("error: ")
    assert invoke("grade", REFERENCE, "--parts", "no_such_part").exit_code == 2

# -----------------------------------------------------------------------------
# Hidden against public cases, and course check


def test_hidden_cases_use_other_shapes_than_the_public_ones():
    for part in spec.PARTS:
        if not part.target:
            continue
        g = grader.graded_part(part)
        public = g.cases(np.random.default_rng([0, part.number]), public=True)
        hidden = g.cases(np.random.default_rng([12345, part.number]), public=False)

        def shapes(cases):
            return [tuple(sorted((k, np.shape(v)) for k, v in c.args.items() if not isinstance(v, dict)))
                    for c in cases]
        assert not set(shapes(public)) & set(shapes(hidden)), part.key


def test_check_against_public_vectors(kit, tmp_path):
    parts = "target_rank,metrics_from_ranks"
    good = invoke("check", REFERENCE, "--vectors", str(kit / "public_vectors.npz"), "--parts", parts)
    assert good.exit_code == 0 and "FAIL" not in good.output, good.output
    bad = invoke("check", str(kit / "bam_student.py"), "--parts", parts)
    assert bad.exit_code == 1 and "FAIL" in bad.output and "not implemented" in bad.output
    shutil.copy(REFERENCE, tmp_path / "alone.py")  # no public_vectors.npz beside it
    assert invoke("check", str(tmp_path / "alone.py")).exit_code == 2


def test_a_process_the_part_leaves_running_is_killed(tmp_path):
    marker = tmp_path / "alive"
    path = with_appended(tmp_path, "daemon.py", f"""
        import os as _os, sys as _sys, time as _time
        if "metrics_from_ranks" in _sys.argv and _os.fork() == 0:   # a child that outlives the part
            for _ in range(100):
                _time.sleep(0.1)
                with open({str(marker)!r}, "a") as _f:
                    _f.write("x")
            _os._exit(0)
        """)
    tests = grader.grade(path, parts="metrics_from_ranks", seed=1)[0]
    assert all(t.score == t.max_score for t in tests)
    size = marker.stat().st_size if marker.exists() else 0
    time.sleep(0.6)
    assert (marker.stat().st_size if marker.exists() else 0) == size, "the child still runs after grading"


def test_huge_output_is_capped(tmp_path):
    path = with_appended(tmp_path, "loud.py", """
        import sys as _sys
        _line = b"x" * 1023 + b"\\n"
        for _ in range(100 * 1024):          # 100 MB
            _sys.stdout.buffer.write(_line)
        _sys.stdout.flush()
        """)
    tests = grader.grade(path, parts="metrics_from_ranks", seed=1)[0]
    assert all(t.score == 0 and "more than 64 MB" in t.output for t in tests), [t.output for t in tests]


def test_malformed_results_score_zero_without_crashing_the_grader(tmp_path):
    path = with_appended(tmp_path, "forged.py", """
        import os as _os, sys as _sys
        np.savez(_sys.argv[4], **{"no-slash": np.float64(1.0)})
        _os._exit(0)
        """)
    tests = grader.grade(path, parts="metrics_from_ranks", seed=1)[0]
    assert all(t.score == 0 and "malformed" in t.output for t in tests), [t.output for t in tests]


def test_answer_key_imports_are_refused(tmp_path):
    for i, line in enumerate(["from bam_minimal import select_interest  # noqa", "import bam_course.e2e",
                              "import importlib; importlib.import_module('bam_minimal')"]):
        path = with_appended(tmp_path, f"alias{i}.py", line + "\n")
        tests = grader.grade(path, parts="select_interest", seed=1)[0]
        assert all(t.score == 0 and "answer key" in t.output for t in tests), (line, [t.output for t in tests])


def test_a_graded_function_defined_outside_the_file_scores_zero(tmp_path):
    path = with_appended(tmp_path, "borrow.py", """
        _code = "def select_interest(logits, selection, tau, u):\\n    return logits.argmax(-1), logits.softmax(-1)\\n"
        exec(compile(_code, "/elsewhere/someone_elses.py", "exec"))
        """)
    tests = grader.grade(path, parts="select_interest,metrics_from_ranks", seed=1)[0]
    for t in tests:
        if t.name.startswith("select_interest"):
            assert t.score == 0 and "defined outside your file" in t.output, t.output
        else:
            assert t.score == t.max_score, t.output


UNTRAINED = """
def train(cfg, data, *args, **kwargs):   # no training at all
    torch.manual_seed(0)
    return build_model(cfg, data.n_items), {}
"""


def test_end_to_end_measures_the_weights_in_the_grader(tmp_path):
    tests = grader.grade(with_appended(tmp_path, "fake.py", UNTRAINED), parts="train", seed=1)[0]
    assert all(t.score == 0 and t.output.startswith("failed: ") for t in tests), [t.output for t in tests]
    wrong = with_appended(tmp_path, "small.py", """
        def train(cfg, data, *args, **kwargs):
            cfg.dim = 8
            return build_model(cfg, data.n_items), {}
        """)
    tests = grader.grade(wrong, parts="train", seed=1)[0]
    assert all(t.score == 0 and "the hard model's" in t.output and ", 8), expected float" in t.output for t in tests), \
        [t.output for t in tests]


def test_docs_agree_on_the_end_to_end_time_and_the_honesty_note(kit):
    handout = (kit / "HANDOUT.md").read_text()
    with open(os.path.join(ROOT, "docs", "course.md")) as f:
        docs = f.read()
    assert f"about {e2e.SECONDS} s" in handout and f"About {e2e.SECONDS} s on one core" in docs
    assert "about a minute" not in handout
    for text in (handout, docs, invoke("grade", "--help").output):  # what remains possible, said the same way
        assert "reads the reference's source from disk" in " ".join(text.split()), text[:200]
    script = (kit / "gradescope" / "run_autograder").read_text()
    assert "exit code" in script and "$rc -eq 2" in script

# -----------------------------------------------------------------------------
# No answer key in the student's process


FORWARDER = '''
import importlib as _il
import importlib.util as _ilu
import os as _os
import sys as _sys
import types as _types


def _answer_key(*names):
    """The reference, wherever this process has it: a loaded module other than this file, an importable
    one (a computed name), or a bam_minimal.py on sys.path, in the working folder or beside this file."""
    names = names or ("ComiRecSA", "select_interest", "target_rank")
    me = _sys.modules.get(__name__)
    for _m in list(_sys.modules.values()):
        if isinstance(_m, _types.ModuleType) and _m is not me and all(
                isinstance(_m.__dict__.get(n), (type, _types.FunctionType)) for n in names):
            return _m
    for _name in ("bam_" + "minimal", "bam_" + "numpy.loss", "bam_" + "numpy.encoders",
                  "bam_" + "tools.course.cases"):
        try:
            _m = _il.import_module(_name)
            if all(hasattr(_m, n) for n in names):
                return _m
        except ImportError:
            pass
    for _p in _sys.path + [_os.getcwd(), _os.path.dirname(_os.path.abspath(__file__))]:
        _f = _os.path.join(_p or ".", "bam_" + "minimal.py")
        if _os.path.exists(_f):
            _spec = _ilu.spec_from_file_location("_key", _f)
            _m = _ilu.module_from_spec(_spec)
            _spec.loader.exec_module(_m)
            return _m
    raise RuntimeError("no answer key in this process")
'''

FORWARD_TORCH = FORWARDER + '''

class ComiRecSA(ComiRecSA):
    def __new__(cls, cfg, n_items):          # the reference's model in place of this class's
        return _answer_key().ComiRecSA(cfg, n_items)

    def forward(self, history, mask, gen=None, routing=None):
        return _answer_key().ComiRecSA.forward(self, history, mask, gen, routing)


def select_interest(logits, selection, tau, u):
    return _answer_key().select_interest(logits, selection, tau, u)


def softmax_loss(pos, neg, beta=0.0):
    return _answer_key().softmax_loss(pos, neg, beta)


def bam_loss(model, cfg, interests, attention, target, negatives, u, tau):
    return _answer_key().bam_loss(model, cfg, interests, attention, target, negatives, u, tau)


def mask_history(scores, full_history, window, mode):
    return _answer_key().mask_history(scores, full_history, window, mode)


def target_rank(scores, target):
    return _answer_key().target_rank(scores, target)


def metrics_from_ranks(rank, ks=(10, 20)):
    return _answer_key().metrics_from_ranks(rank, ks)


def train(cfg, data, *args, **kwargs):
    return _answer_key().train(cfg, data, *args, **kwargs)
'''

FORWARD_NUMPY = "import numpy as np\n" + FORWARDER + '''

def softmax_loss_backward(pos, neg, beta, d_loss):
    name = "softmax_loss_" + "backward"
    return getattr(_answer_key(name), name)(pos, neg, beta, d_loss)


def comirec_backward(params, cache, d_interests, d_attention=None):
    name = "comirec_" + "backward"
    return getattr(_answer_key(name), name)(params, cache, d_interests, d_attention)
'''


def test_a_file_that_forwards_to_the_reference_in_its_process_scores_zero(kit, tmp_path):
    torch_file = tmp_path / "forward.py"
    torch_file.write_text((kit / "bam_student.py").read_text() + "\n\n" + FORWARD_TORCH)
    numpy_file = tmp_path / "forward_np.py"
    numpy_file.write_text(FORWARD_NUMPY)
    for path, n in ((torch_file, sum(len(p.points) for p in spec.parts_of("torch"))), (numpy_file, 4)):
        tests, _ = grader.grade(str(path), seed=7)
        assert len(tests) == n
        for t in tests:  # every part ran, found no reference to forward to, and scored 0
            assert t.score == 0 and "no answer key in this process" in t.output, (t.name, t.output)


def test_the_student_process_is_clean(tmp_path):
    path = with_appended(tmp_path, "probe.py", """
        import os as _os, sys as _sys
        _ours = ["bam_" + n for n in ("minimal", "numpy", "tools", "data")]
        _bad = [m for m in _sys.modules if m.split(".")[0] in _ours]
        _bad += [p for p in _sys.path
                 if any(_os.path.exists(_os.path.join(p or ".", n)) for n in _ours + [_ours[0] + ".py"])]
        _bad += [k for k in _os.environ if k.startswith("PYTHON") or _os.path.realpath(_os.environ[k]) == %r]
        _bad += [f for f in _os.listdir(".") if f not in ("probe.py", "grading_harness.py", "cases.npz")]
        _bad += [] if _os.path.realpath(_os.getcwd()) != %r else ["the working folder is the repository"]
        if _bad:
            raise RuntimeError(f"not clean: {_bad}")
        """ % (os.path.realpath(ROOT), os.path.realpath(ROOT)))
    tests = grader.grade(path, parts="metrics_from_ranks", seed=1)[0]
    assert all(t.score == t.max_score for t in tests), [t.output for t in tests]


def test_bam_loss_gets_stand_ins_that_replay_the_reference(tmp_path):
    """bam_loss's part replaces select_interest and softmax_loss with replays: a file whose own two are
    wrong still gets bam_loss's points, and a bam_loss that calls them with other arguments is told so."""
    path = with_appended(tmp_path, "standin.py", """
        def select_interest(logits, selection, tau, u):
            raise RuntimeError("the student's own select_interest ran")


        def softmax_loss(pos, neg, beta=0.0):
            raise RuntimeError("the student's own softmax_loss ran")
        """)
    tests = by_name(grader.grade(path, parts="bam_loss", seed=2)[0])
    assert all(t.score == t.max_score for t in tests.values()), [t.output for t in tests.values()]
    path = with_appended(tmp_path, "forced.py", """
        _bam_loss = bam_loss


        def bam_loss(model, cfg, interests, attention, target, negatives, u, tau):
            cfg.selection, cfg.remi_beta = "hard", 0.0           # BUG: always the argmax, REMI ignored
            return _bam_loss(model, cfg, interests, attention, target, negatives, u, tau)
        """)
    tests = by_name(grader.grade(path, parts="bam_loss", seed=2)[0])
    assert tests["bam_loss: hard"].score == tests["bam_loss: hard"].max_score
    assert tests["bam_loss: bam"].score == 0 and "selection='hard', but cfg.selection is 'bam'" in \
        tests["bam_loss: bam"].output, tests["bam_loss: bam"].output


ARGMAX_BAM = """
_select_interest = select_interest


def select_interest(logits, selection, tau, u):
    index, probs = _select_interest(logits, selection, tau, u)
    return (logits.argmax(-1) if selection == "bam" else index), probs     # BUG: BaM trains with the argmax
"""


def test_end_to_end_balance_catches_a_bam_that_takes_the_argmax(tmp_path):
    tests = by_name(grader.grade(with_appended(tmp_path, "argmax.py", ARGMAX_BAM), parts="train", seed=3)[0])
    balance = tests["train: BaM balances its interests"]
    assert balance.score == 0 and "selects like hard" in balance.output, balance.output
    for name in ("train: BaM beats most popular", "train: BaM recovers the topics"):
        assert tests[name].score == tests[name].max_score, tests[name].output


def test_balance_threshold_matches_the_docs():
    with open(os.path.join(ROOT, "docs", "course.md")) as f:
        docs = " ".join(f.read().split())
    assert f"threshold {e2e.BALANCE_MARGIN:g}" in docs

# -----------------------------------------------------------------------------
# target_rank's non-finite rule: NaN and +inf of other items rank above the target


def rule_ranks(scores, target):
    """The rule, written out here: NaN/+inf of others above, ties by lower id, a non-finite target a miss."""
    ranks = []
    for row, t in zip(scores, target):
        s, n = row[t], len(row)
        if not np.isfinite(s):
            ranks.append(n)
            continue
        ids = np.arange(n) != t
        above = (row > s) | np.isnan(row) | ((row == s) & (np.arange(n) < t))
        ranks.append(int((above & ids).sum()))
    return np.array(ranks)


@pytest.mark.parametrize("public", [True, False])
def test_target_rank_non_finite_cases_follow_the_rule(public):
    part = spec.BY_KEY["target_rank"]
    g, ref = grader.graded_part(part), grader.reference(part)
    case = next(c for c in g.cases(np.random.default_rng([0 if public else 9, 6]), public) if "non-finite" in c.checks)
    s, t = case.args["scores"], case.args["target"]
    own = s[np.arange(len(t)), t]
    others = np.ones(s.shape, bool)
    others[np.arange(len(t)), t] = False
    assert np.isnan(own).any() and np.isposinf(own).any() and np.isneginf(own).any()
    assert (np.isnan(s) & others).any() and (np.isposinf(s) & others).any() and (np.isneginf(s) & others).any()
    assert (grader.expected_outputs(g, ref, case)["rank"] == rule_ranks(s, t)).all()


def test_target_rank_that_lets_overflow_help_gets_the_hint(tmp_path):
    path = with_appended(tmp_path, "helps.py", """
        _target_rank = target_rank


        def target_rank(scores, target):   # BUG: NaN and +inf counted as -inf (the old rule)
            inf = float("inf")
            return _target_rank(torch.nan_to_num(scores, nan=-inf, posinf=-inf, neginf=-inf), target)
        """)
    tests = by_name(grader.grade(path, parts="target_rank", seed=4)[0])
    t = tests["target_rank: non-finite"]
    assert t.score == 0 and "counted it as -inf" in t.output, t.output
    assert tests["target_rank: distinct"].score == 5 and tests["target_rank: ties"].score == 5
