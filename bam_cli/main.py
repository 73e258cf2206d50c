"""
bam_cli/main.py: the root command group; cli.py runs `main()`.

    python cli.py --help
    torchrun --nproc-per-node 2 cli.py train --data movies.txt    # every worker ends with its own exit code
"""
import os

import click

from bam_cli import course, data, evidence, read, run, tune, twin
from bam_cli.options import Group


@click.group(cls=Group)
def cli():
    """bam: the reference implementation of BaM (KDD '24, BigData '24). See README.md."""
    from bam_runs.perf import keep_freed_memory  # torch-free: a glibc setting
    keep_freed_memory()


for c in (run.COMMANDS + evidence.COMMANDS + data.COMMANDS + twin.COMMANDS + course.COMMANDS + read.COMMANDS
          + tune.COMMANDS):
    cli.add_command(c)


def main():
    if "LOCAL_RANK" in os.environ:  # under torchrun: each worker ends with its own exit code
        from bam_runs import distributed
        distributed.run_and_leave(lambda: cli(prog_name="cli.py"))
    else:
        cli(prog_name="cli.py")
