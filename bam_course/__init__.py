"""
bam_course: a course kit built from bam_minimal.py (and, for the NumPy track, bam_numpy): student skeletons,
a handout, public vectors, and a grader that runs each part alone in its own process. `python cli.py course
make|check|grade` (bam_cli/course_commands.py); docs/course.md has the details.
"""
