"""
bam_course: a course kit built from bam_minimal.py (and, for the NumPy track, bam_numpy).

    python cli.py course make --out kit/                    # kit/bam_student.py, HANDOUT.md, public vectors
    python cli.py course make --out kit/ --track numpy      # adds kit/bam_numpy_student.py (the backward pass)
    python cli.py course make --out kit/ --format notebook  # kit/bam_student.ipynb in place of the .py
    python cli.py course check kit/bam_student.py           # the public self-check
    python cli.py course grade kit/bam_student.py --json results.json   # the hidden grading

Modules: spec (the parts: names, points, equations), skeleton (the student files, cut from the
reference source with `ast`), cases and numpy_cases (inputs, reference outputs and known-wrong
variants for each part), harness (the only kit code in the student's process: it calls the student's
functions on array inputs, standalone), e2e (the end-to-end part), grader (a fresh folder and a clean
subprocess per part, time limits, scores, hints, Gradescope JSON), handout (HANDOUT.md,
run_autograder), notebook (the assignment as bam_student.ipynb, and its code cells back to the .py file
that the grader grades). The known-wrong variants behind the hints are the reference's functions with
small recorded edits of their current source (common.Bug), so they cannot drift from it. docs/course.md
has the details: the reference and the grader are not importable in the student's process.
"""
