"""
bam_cli/read_commands.py: `read`, bam_minimal.py as one annotated HTML page: its comments and docstrings beside its
code, the equations it cites as MathML, linked both ways. No JavaScript; the page opens offline.

    python cli.py read --out site/        # writes site/index.html (site/ is git-ignored: it is generated)

The work is in bam_read/page.py; the equations' LaTeX in bam_read/equations.py.
"""
import time

import click

from bam_cli.options import REFERENCE


@click.command("read")
@click.option("--out", default="site", show_default=True,
              help="the folder to write index.html into (made if missing; a file there is refused)")
def read_page(out):
    """bam_minimal.py as one static HTML page, labml.ai-style: prose left, code right, section by section,
    the cited equations as MathML. Generated from the file alone: rerun it after editing bam_minimal.py."""
    from bam_read import page   # pygments and latex2mathml load here, not for every command's --help
    start = time.perf_counter()
    path = page.write(REFERENCE, out)
    click.echo(f"wrote {path} from bam_minimal.py in {time.perf_counter() - start:.2f} s")


COMMANDS = [read_page]
