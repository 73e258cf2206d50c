"""
bam_course/handout.py: the kit's HANDOUT.md (or the notebook's Markdown) and its Gradescope scripts, written
from the parts in spec.py and the graders' hints, so the handout says what the grader does.
"""
from bam_course import e2e

ISOLATION = ("The grader imports and runs your code. It runs each part in its own subprocess with a time limit "
             "and a cap on what it writes, and kills everything the part started once it is over; there is no "
             "other sandbox, so it is run inside a throw-away container (Gradescope's).")
HONESTY = ("While it is graded, your file runs alone: each part in a fresh, empty folder holding only a copy of your "
           "file and a small harness that gives your functions their inputs as arrays and takes their outputs "
           "back. The reference implementation (the answer key: `bam_minimal`, `bam_numpy`) and the grader "
           "(`bam_course`) are neither imported, nor patched in, nor importable there, and the expected outputs "
           "never enter that process. Where a part calls another part (`bam_loss` calls `select_interest` and "
           "`softmax_loss`), it gets a stand-in that replays the reference's outputs for exactly those inputs, "
           "so a bug costs only the points of the function that has it. What remains possible: the reference's "
           "source ships with this kit, and a file that reads the reference's source from disk and runs it is "
           "not stopped by the grader (nothing can stop that); that is a matter for the course's "
           "academic-integrity rules. A file that names `bam_minimal` or `bam_course` (or, on the PyTorch "
           "track, `bam_numpy`) scores 0 outright, and a graded function defined outside your file scores 0 "
           "for its part.")


def part_section(part, hints):
    lines = [f"### Part {part.number}: `{part.key}` ({part.max_points} points): {part.title}", ""]
    if part.key == "train":
        lines += [
            "Nothing to write: your whole file (Config, Dataset, the model, the loss, `train`, `evaluate`) trains "
            "ComiRec-SA with `hard` and with `bam` on the built-in synthetic data, whose users follow planted "
            f"topics ({e2e.SYNTH['users']} users, {e2e.SYNTH['items']} items, {e2e.SYNTH['topics']} topics, "
            f"{e2e.TRAIN['max_iters']} iterations each, about {e2e.SECONDS} s on one core). Your file hands back "
            "only the two trained models' weights; the grader loads them into the reference's ComiRec-SA and "
            "measures both models with the reference's own evaluation:", "",
            f"- BaM beats most popular: BaM's test Recall@20 is at least {e2e.BEAT_POPULAR:g}x the most-popular "
            f"baseline's ({part.points['BaM beats most popular']} points).",
            f"- BaM recovers the topics: the interest-topic purity of BaM's top-10 lists "
            f"(`bam_experiments/balance.py` `topic_recovery`) is at least {e2e.PURITY_FLOOR:g} and at least hard's "
            f"minus {e2e.PURITY_SLACK:g} ({part.points['BaM recovers the topics']} points).",
            "- BaM balances its interests: for every test user, the normalised entropy (0: one interest takes "
            "everything, 1: all N equally) of P(interest n | target) = softmax(tau * M_u^T e_target), the "
            "distribution BaM draws from and hard selection takes the argmax of, averaged over the users; BaM's "
            f"is at least hard's plus {e2e.BALANCE_MARGIN:g} ({part.points['BaM balances its interests']} "
            "points). A BaM training that selects like hard (the argmax) gets the same value as hard and loses "
            "these points.", "",
            "The reference clears all three with a wide margin on every seed we tried (docs/course.md has the "
            "numbers); a file that fails here has a bug that the function parts did not catch, or a part left "
            "undone.", ""]
        return lines
    lines += [f"Implements: {part.equation}.", "", f"To do: {part.todo.rstrip('.')}.", "", "| subtest | points |",
              "|---|---|"]
    lines += [f"| `{part.key}: {sub}` | {pts} |" for sub, pts in part.points.items()]
    lines += [""] + [f"- hint ({sub}): {h}" for sub, h in hints.items() if sub in part.points] + [""]
    return lines


NOTEBOOK_FILES = (
    "Files: `bam_student.ipynb`, this notebook: the code cells under each part's heading are yours to write (they "
    "are graded); the other code cells are the reference, unchanged (locked: leave them as they are), and all of "
    "them together, in order, are the file the grader grades (`course grade bam_student.ipynb` extracts them; "
    "the setup and self-check cells are not part of it). `public_vectors.npz` holds the public self-check. A code "
    "cell you add is part of the file too, and runs whenever the file is imported: to try things out (a training "
    "run: `train(Config(max_iters=2000), Dataset(read_official('data.txt')))`), tag the cell `otter_ignore`, "
    "which leaves it out.")


def render(parts, track, graded, notebook=False):
    """HANDOUT.md (notebook: the text of bam_student.ipynb's Markdown cells). graded: key -> a part's Graded."""
    total = sum(p.max_points for p in parts)
    numpy = any(p.track == "numpy" for p in parts)
    student = "bam_student.ipynb" if notebook else "bam_student.py"
    files = "`bam_student.py`" + (" and `bam_numpy_student.py`" if numpy else "")
    lines = [
        "# BaM from the inside: a course kit", "",
        "You implement the core of BaM (Lee, Yun and Kang, *Balanced Interest Learning for Multi-interest "
        "Recommendation*, KDD '24): ComiRec-SA's multi-interest encoder, the interest selection that BaM "
        "changes (the argmax against a draw from softmax(tau * logits)), the sampled-softmax loss, and the "
        "leave-one-out evaluation with its masking, tie rule and metrics."
        + (" The NumPy track adds the hand-written backward pass." if numpy else ""), ""]
    lines += [NOTEBOOK_FILES, ""] if notebook else [
        f"Files: {files} (the parts to fill in: search for `NotImplementedError`), `public_vectors.npz` "
        "(the public self-check), this handout. Everything else in `bam_student.py` is the reference, "
        "unchanged: once the parts are done it trains and evaluates end to end:", "",
        "```", "python bam_student.py data.txt --max_iters=2000     # one `user item` pair per line",
        "python cli.py data synth --out synth.txt           # the synthetic data, if you have no other", "```",
        ""]
    lines += [
        f"Total: {total} points. Each part's docstring and comments give the equation and the shapes.", "",
        "## Parts", ""]
    for part in parts:
        lines += part_section(part, getattr(graded.get(part.key), "hints", {}))
    if numpy:
        lines += [
            "## The NumPy track", "",
            "`bam_numpy_student.py` holds the backward passes that `bam_numpy` (the NumPy twin of the reference) "
            "writes by hand instead of using autograd. Each is graded twice: `golden` compares your gradients "
            "with bam_numpy's own; `finite differences` compares <your gradient, v> with "
            "(f(x + h v) - f(x - h v)) / 2h of the reference forward pass, for random directions v (h = 1e-6, "
            "float64), so it checks the mathematics itself. Once done, "
            "`python bam_numpy_student.py --synthetic --max_iters=2000` trains bam_numpy with your gradients.", ""]
    lines += [
        "## Self-check", "",
        "```", f"python cli.py course check {student}          # the public vectors: what passes, what fails",
        f"python cli.py course check {student} --parts train   # the end-to-end part too (about {e2e.SECONDS} s)"]
    lines += ["python cli.py course check bam_numpy_student.py"] if numpy else []
    lines += [
        "```", "",
        "The public vectors come from one seed and fixed shapes. Passing them is necessary, not sufficient.", "",
        "## How grading works", "",
        "```", f"python cli.py course grade {student} --json results.json", "```", "",
        "- Hidden cases: drawn at grading time from another seed and with other shapes than the public ones, "
        "and their expected outputs computed then by the reference implementation. Hard-coding the public "
        "outputs earns nothing.",
        "- Each subtest is all or nothing over its cases. A failure names the first wrong output (the entry, "
        "your value, the expected one) and a hint; when your wrong output equals that of a common bug (the "
        "argmax instead of the draw, ties broken the other way, ...) the hint names that bug.",
        "- A part that raises, runs past its time limit (60 s; the end-to-end part 300 s), crashes or returns "
        "something that is not numbers scores 0 with the reason, and the other parts are still graded. A "
        "syntax error scores 0 everywhere: nothing can run.",
        f"- {ISOLATION}",
        f"- {HONESTY}", "",
        "Tolerances: float32 outputs within rtol 1e-4, atol 1e-5 (select_interest 1e-5; metrics 1e-6); integer "
        "outputs (indices, ranks) exactly and as integer tensors; the NumPy track in float64 (rtol 1e-7 against "
        "the golden gradients, 1e-5 against finite differences).", ""]
    return "\n".join(lines)


RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope's entry point: grade the submission with the bam course grader (this repository, at
# /autograder/source), write results.json. docs/course.md, "Gradescope", says what it isolates and what
# not (a process that calls setsid() survives the group kill).
set -u
cd /autograder/source
out=/autograder/results/results.json
files=()
for name in {students}; do
    [ -f "/autograder/submission/$name" ] && files+=("/autograder/submission/$name")
done
if [ ${{#files[@]}} -eq 0 ]; then
    # exit code 2 below says why; Gradescope still gets a results.json
    files=("/autograder/submission/{first}")
fi
OMP_NUM_THREADS=1 python3 cli.py course grade "${{files[@]}}" --json "$out"
rc=$?
if [ $rc -eq 2 ]; then
    printf '{{"score": 0, "output": "no gradable file: submit {students}"}}\\n' > "$out"
elif [ $rc -ne 0 ]; then
    printf '{{"score": 0, "output": "the grader itself failed (exit code %d): %s"}}\\n' "$rc" \\
        "ask the course staff to look at the log" > "$out"
fi
"""

SETUP = """#!/usr/bin/env bash
# Gradescope's setup: the repository's requirements (torch CPU wheels are enough).
set -eu
cd /autograder/source
pip3 install -r requirements.txt
"""
