"""
bam_cli/main.py: the root command group; cli.py runs `main()`.

    python cli.py --help
    torchrun --nproc-per-node 2 cli.py train --data movies.txt    # every worker ends with its own exit code
"""
import os

import click

from bam_cli import (course_commands, data_commands, evidence_commands, read_commands, run_commands, tune_commands,
                     twin_commands)
from bam_cli.options import Group


@click.group(cls=Group)
def cli():
    """bam: the reference implementation of BaM (KDD '24, BigData '24). See README.md."""
    from bam_runs.allocator import keep_freed_memory  # torch-free: a glibc setting
    keep_freed_memory()


for c in (run_commands.COMMANDS + evidence_commands.COMMANDS + data_commands.COMMANDS + twin_commands.COMMANDS
          + course_commands.COMMANDS + read_commands.COMMANDS + tune_commands.COMMANDS):
    cli.add_command(c)


def main():
    if "LOCAL_RANK" in os.environ:  # under torchrun: each worker ends with its own exit code
        from bam_runs import distributed
        distributed.run_and_leave(lambda: cli(prog_name="cli.py"))
    else:
        cli(prog_name="cli.py")
