"""
bam_read: bam_minimal.py as one annotated, static HTML page (labml.ai-style): comments and docstrings on the
left, code on the right, the equations it cites as MathML. It reads bam_minimal.py as text and never imports
it; it imports no torch, and nothing of the project but the data layer (its InputError, atomic writes).

  page       render(source) -> the page; write(source, out) -> out/index.html
  equations  EQUATIONS: the LaTeX of each equation bam_minimal.py cites, keyed by (paper, number)

    python cli.py read --out site/
"""
