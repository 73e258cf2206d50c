"""
bam_cli/course_commands.py: `python cli.py course ...`, the course kit's commands; cli.py adds them.

    python cli.py course make --out kit/ [--parts select_interest,target_rank] [--track torch|numpy]
    python cli.py course make --out kit/ --format notebook        # kit/bam_student.ipynb instead of the .py
    python cli.py course check kit/bam_student.py                 # public vectors; exit 0 when all pass
    python cli.py course grade kit/bam_student.py --json results.json [--timeout 60] [--seed N]
    python cli.py course grade kit/bam_student.ipynb              # a notebook: its code cells, graded as the .py

The grader imports and runs the student's code, each part in a subprocess of its own, alone in a fresh
folder with a harness (bam_course/harness.py): the reference and the grader are not importable
there (docs/course.md). grade exits 0 when grading completed (whatever the score) and 2 on bad input.
The work is in bam_course/.
"""
import os

import click

from bam_course import spec
from bam_course.spec import CourseError
from bam_cli.options import Group

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ISOLATION = ("The grader imports and runs the student's code, each part in its own subprocess under a time "
             "limit, with a cap on what it writes and its process group killed afterwards (no sandbox): grade "
             "untrusted files inside a throw-away container. The part runs alone, in a fresh folder with a small "
             "harness and a clean sys.path and environment: the reference (the answer key) and the grader are "
             "neither imported nor importable there, and the expected outputs stay in the grader. What remains "
             "possible: a file that reads the reference's source from disk (it ships with the kit) and runs it "
             "is not stopped.")


@click.group(cls=Group)
def course():
    """A course kit: student skeletons, a handout, a self-check and a grader (docs/course.md)."""

# -----------------------------------------------------------------------------
# make


@course.command()
@click.option("--out", required=True, help="the folder to write the kit into (created if needed)")
@click.option("--parts", default=None, help="comma-separated parts to blank (default: all of the track)")
@click.option("--track", type=click.Choice(spec.TRACKS), default="torch", show_default=True,
              help="numpy adds bam_numpy_student.py: the hand-written backward passes")
@click.option("--format", "fmt", type=click.Choice(["py", "notebook"]), default="py", show_default=True,
              help="notebook: bam_student.ipynb (the handout in Markdown cells, one cell per part, self-checks) in "
                   "place of bam_student.py and HANDOUT.md")
def make(out, parts, track, fmt):
    """Write bam_student.py (bam_minimal.py with the graded bodies cut out), HANDOUT.md,
    public_vectors.npz and gradescope/run_autograder into --out (--format notebook: bam_student.ipynb)."""
    from bam_course import grader, handout, notebook, skeleton
    from bam_data.files import atomic_text
    tracks = ["torch"] + (["numpy"] if track == "numpy" else [])
    chosen = [p for t in tracks for p in spec.select(parts, t)]
    if parts and not [p for p in chosen if p.target]:
        raise CourseError(f"--parts {parts}: none of these parts is in the {track} track (fix: see --help)")
    grader.check_variants(chosen)  # every known bug still derives from the reference (else: which edit, and why)
    os.makedirs(os.path.join(out, "gradescope"), exist_ok=True)
    by_key = {p.key: grader.graded_part(p) for p in chosen if p.target}
    with open(os.path.join(ROOT, "bam_minimal.py")) as f:
        source = f.read()
    if fmt == "notebook":
        nb = notebook.build(skeleton.blank(source, [p for p in chosen if p.track == "torch"], "bam_minimal.py")[0],
                            chosen, handout.render(chosen, track, by_key, notebook=True), ROOT)
        atomic_text(os.path.join(out, "bam_student.ipynb"), notebook.nbformat.writes(nb))
        written = ["bam_student.ipynb"]
    else:
        atomic_text(os.path.join(out, "bam_student.py"), skeleton.torch_student(source, chosen))
        written = ["bam_student.py"]
    if "numpy" in tracks and any(p.track == "numpy" for p in chosen):
        atomic_text(os.path.join(out, "bam_numpy_student.py"), skeleton.numpy_student(ROOT, chosen))
        written.append("bam_numpy_student.py")
    grader.public_vectors(os.path.join(out, "public_vectors.npz"), chosen)
    if fmt == "py":
        atomic_text(os.path.join(out, "HANDOUT.md"), handout.render(chosen, track, by_key))
    script = handout.RUN_AUTOGRADER.format(students=" ".join(written), first=written[0])
    for name, text in (("run_autograder", script), ("setup.sh", handout.SETUP)):
        path = os.path.join(out, "gradescope", name)
        atomic_text(path, text)
        os.chmod(path, 0o755)
    click.echo(f"wrote {', '.join(written)}{', HANDOUT.md' * (fmt == 'py')}, public_vectors.npz, "
               "gradescope/run_autograder and "
               f"gradescope/setup.sh into {out} (parts {', '.join(str(p.number) for p in chosen)})")

# -----------------------------------------------------------------------------
# check and grade


def grade_options(f):
    f = click.option("--parts", default=None, help="comma-separated parts to grade (default: every part of the "
                     "file's track; `train` is the end-to-end part)")(f)
    f = click.option("--track", type=click.Choice(spec.TRACKS), default=None,
                     help="default: numpy when the file defines the NumPy-track functions, else torch")(f)
    f = click.option("--timeout", type=float, default=60, show_default=True, help="seconds per part")(f)
    f = click.option("--e2e-timeout", type=float, default=300, show_default=True,
                     help="seconds for the end-to-end part")(f)
    return f


@course.command()
@click.argument("file")
@click.option("--vectors", default=None, help="default: public_vectors.npz beside FILE")
@grade_options
def check(file, vectors, parts, track, timeout, e2e_timeout):
    """Self-check FILE against the public vectors: prints what passes and what fails; exits 0 when
    everything passes, 1 otherwise. The end-to-end part runs only with --parts train."""
    from bam_course import grader
    vectors = vectors or os.path.join(os.path.dirname(os.path.abspath(file)), "public_vectors.npz")
    if not os.path.isfile(vectors):
        raise CourseError(f"{vectors}: no public vectors (fix: pass --vectors, or run `course make` to write them)")
    source = grader.read_source(file)
    track = track or grader.track_of(source)
    parts = parts or ",".join(p.key for p in spec.parts_of(track) if p.key != "train")
    tests, info = grader.grade(file, parts=parts, track=track, timeout=timeout, e2e_timeout=e2e_timeout,
                               vectors=vectors)
    grader.print_table(tests, info, echo=click.echo)
    raise SystemExit(0 if all(t.score == t.max_score for t in tests) else 1)


@course.command(help=f"""Grade FILES (bam_student.py or bam_student.ipynb, whose code cells are graded as
that .py file, and bam_numpy_student.py for the NumPy track) on hidden cases: each part in its own
subprocess under --timeout, a table of points with the first wrong output and a hint, and --json in
Gradescope's format. Exit 0 when grading completed, whatever the score; 2 on bad input (a missing file,
not Python). {ISOLATION}""")
@click.argument("files", nargs=-1, required=True)
@click.option("--json", "json_out", default=None, help="write Gradescope's results.json here")
@click.option("--seed", type=int, default=None, help="the hidden cases' seed (default: a fresh one, printed)")
@grade_options
def grade(files, json_out, seed, parts, track, timeout, e2e_timeout):
    from bam_course import grader
    for file in files:  # refuse bad input before spending time on the good files
        grader.read_source(file)
    every, infos = [], []
    for file in files:
        tests, info = grader.grade(file, parts=parts, track=track, seed=seed, timeout=timeout,
                                   e2e_timeout=e2e_timeout, log=lambda s: click.echo(s, err=True))
        grader.print_table(tests, info, echo=click.echo)
        every, infos = every + tests, infos + [info]
    if json_out:
        grader.write_json(every, infos, json_out)
        click.echo(f"wrote {json_out}")


COMMANDS = [course]
