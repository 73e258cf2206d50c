"""
bam_read/equations.py: the LaTeX of each equation that bam_minimal.py cites, for the annotated page.

bam_minimal.py cites the papers' equations as `[KDD24] Eq. (3)` beside a plain-text formula written for a
reader of code (`softmax(tau * M_u^T e_target)`), which cannot be typeset mechanically. So the typeset form
lives here: one entry per citation, keyed by the paper's tag and the number as cited (the range (10)-(13) is
one entry, as the file cites it). Each entry typesets the formula that bam_minimal.py states and implements,
in the papers' notation (M_u is d x N, m_u^n its n-th interest, e_i an item's embedding, i+ the target); it
is not a copy of the paper's typesetting.

tests/test_read_page.py checks that every citation in bam_minimal.py has an entry here and every entry is
cited, so that the two cannot drift; page.render refuses a citation without an entry.

    from bam_read.equations import EQUATIONS
    EQUATIONS["KDD24", "3"].latex       # -> the display lines of [KDD24] Eq. (3), in LaTeX
"""
from typing import NamedTuple


class Equation(NamedTuple):
    what: str           # one line under the number, in words (`x` is set as code)
    latex: tuple        # display lines, each converted to one MathML block by latex2mathml

# -----------------------------------------------------------------------------
# The table: (paper tag, number as cited) -> Equation


EQUATIONS = {
    ("KDD24", "1"): Equation(
        "each interest's correlation with the target; `hard` selection takes the first argmax",
        (r"\mathbf{M}_u^{\top}\mathbf{e}_{i^{+}} = \big(\mathbf{m}_u^{1\top}\mathbf{e}_{i^{+}}, \dots,"
         r" \mathbf{m}_u^{N\top}\mathbf{e}_{i^{+}}\big)",
         r"n^{*} = \operatorname{argmax}_{n}\; \mathbf{m}_u^{n\top}\mathbf{e}_{i^{+}}")),
    ("KDD24", "3"): Equation(
        "BaM: the interest that scores the target is drawn from a softmax of the correlations at temperature tau",
        (r"P(\mathbf{m}_u^{n} \mid i^{+}) = \frac{\exp(\tau\, \mathbf{m}_u^{n\top}\mathbf{e}_{i^{+}})}"
         r"{\sum_{k=1}^{N} \exp(\tau\, \mathbf{m}_u^{k\top}\mathbf{e}_{i^{+}})}",
         r"n \sim P(\cdot \mid i^{+})")),
    ("BD24", "9"): Equation(
        "BaM_l: the correlations after two learned linear maps to d' dimensions",
        (r"P(\mathbf{m}_u^{n} \mid i^{+}) = \operatorname{softmax}_{n}\big(\tau\, l_1(\mathbf{m}_u^{n})^{\top}"
         r" l_2(\mathbf{e}_{i^{+}})\big)",
         r"l_1, l_2 : \mathbb{R}^{d} \to \mathbb{R}^{d'}")),
    ("BD24", "10-13"): Equation(
        "the multi-interest loss: an item's score over all interests is a logsumexp, in a sampled softmax over "
        "the negatives S, added to the selected interest's loss",
        (r"s_u(i) = \log \sum_{n=1}^{N} \exp(\mathbf{m}_u^{n\top}\mathbf{e}_{i})",
         r"\mathcal{L}_{\mathrm{multi}} = -\log \frac{\exp s_u(i^{+})}{\exp s_u(i^{+}) + \sum_{j \in S} \exp s_u(j)}",
         r"\mathcal{L} = \mathcal{L}_{\mathrm{selected}} + \mathcal{L}_{\mathrm{multi}}")),
}
