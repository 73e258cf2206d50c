"""
bam_cli/options.py: the command line's shared options and its error rule, without torch, so that
`python cli.py --help`, every command's --help and the errors that need no model answer at once
(importing torch alone takes about 2.4 s). Every module of bam_cli builds on it.

    from bam_cli import options
    @options.data_options          # --data, --format, --filter: one `source` argument, a bam_data DataSource
    @options.config_options        # every field of bam_minimal.Config as a flag
    def train(source, **kwargs): ...

A module that imports torch (bam_minimal and every package above the data layer) is imported inside the
command that needs it, by an `import` statement, never at the top of a bam_cli module: --help, `data stats`
and the errors that need no model then load no torch (tests/test_cli.py checks `cli.py --help`).

The Config fields, their defaults, their comments (the --help text) and CHOICES are read from
bam_minimal.py's source with `ast`, never by importing it; tests/test_cli.py checks them against the
imported class.
"""
import ast
import functools
import os
import sys

import click

import bam_data
from bam_data import filters
from bam_data.source import DataSource

REFERENCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bam_minimal.py")

# -----------------------------------------------------------------------------
# bam_minimal.Config, read from its source


@functools.lru_cache(maxsize=None)
def reference_config():
    """-> ([(field, default, comment)], CHOICES) of bam_minimal.py, in the order of the source."""
    with open(REFERENCE, encoding="utf-8") as f:
        source = f.read()
    lines, fields, choices = source.splitlines(), [], {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and node.name == "Config":
            for st in node.body:
                if isinstance(st, ast.AnnAssign):
                    comment = lines[st.lineno - 1][st.end_col_offset:].partition("#")[2].strip()
                    fields.append((st.target.id, ast.literal_eval(st.value), comment or None))
        elif isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "CHOICES":
            choices = {kw.arg: ast.literal_eval(kw.value) for kw in node.value.keywords}
    return fields, choices


def choices(name):
    return reference_config()[1][name]


def config_options(f):
    """Every Config field as a flag: --n-interests, --selection, ..., with the official defaults."""
    fields, known = reference_config()
    for name, default, comment in reversed(fields):
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            f = click.option(f"{flag}/--no-{flag[2:]}", name, default=default, show_default=True, help=comment)(f)
        else:
            kind = click.Choice(known[name]) if name in known else type(default)
            f = click.option(flag, name, type=kind, default=default, show_default=True, help=comment)(f)
    return f

# -----------------------------------------------------------------------------
# Options that several commands share


def output_path(ctx, param, path):
    """Check an output's folder before any work is done, so that a typo does not cost a run."""
    if path is not None:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise bam_data.InputError(f"{folder}: no such folder for --{param.name.replace('_', '-')} "
                                      "(fix: create it, or pass another path)")
        if os.path.isdir(path):
            raise bam_data.InputError(f"{path}: is a folder (fix: pass a file name)")
    return path


def existing(ctx, param, path):
    """A --data or --checkpoint that is not there stops before torch is imported or a run folder is made."""
    if path is not None and not os.path.exists(path):
        raise bam_data.InputError(f"{path}: no such file for --{param.name.replace('ckpt', 'checkpoint')} "
                                  "(fix: check the path)")
    return path


def data_options(f):
    """--data, --format and --filter: what data a command reads, and how. The command gets them as one argument,
    `source`, a bam_data.source.DataSource built here once, which the loaders read (bam_runs.datasets)."""
    command = f

    @functools.wraps(command)
    def with_source(*args, data, fmt, data_filter, **kwargs):
        return command(*args, source=DataSource(data, fmt, data_filter), **kwargs)
    f = with_source  # click reads the options below from it (functools.wraps shares the list of those above)
    f = filter_option(f)
    f = click.option("--format", "fmt", type=click.Choice(bam_data.FORMATS), default="auto", show_default=True,
                     help="data format (docs/formats.md)")(f)
    return click.option("--data", type=str, default=None, callback=existing,
                        help="interaction file; default: the built-in synthetic dataset")(f)


def filter_option(f):
    """--filter, as `data_filter`: the commands that read data with --data and --format (data_options; export and
    crosscheck, whose --data has a meaning of its own) read a filtered file the way it was trained on."""
    return click.option("--filter", "data_filter", type=click.Choice(filters.FILTERS), default="none",
                        show_default=True,
                        help="comirec: ComiRec's preprocessing, applied once after reading: drop the items with fewer "
                             "than 5 interactions, then the users left with fewer than 5 of the rest "
                             "(docs/protocols.md); never implied by --protocol comirec; a checkpoint trained with it "
                             "needs it again (its data fingerprint is of the filtered data)")(f)


def official_options(f):
    """--n-interests and --seq-len, for official MIND state_dicts."""
    f = click.option("--seq-len", type=int, default=50, show_default=True, help="official MIND state_dicts: L")(f)
    return click.option("--n-interests", type=int, default=4, show_default=True,
                        help="official MIND state_dicts: N")(f)


def other_data_option(f):
    """--other-data: use a checkpoint on data other than its own, on purpose (checkpoints.check_data)."""
    return click.option("--other-data", is_flag=True,
                        help="use the checkpoint on data other than it was trained on, on purpose (a note says so, "
                             "and the JSON records it)")(f)

def note(line):
    """The checkpoint loaders' notes: on stderr, beside the errors, and from process 0 only (under torchrun
    every process loads a checkpoint; torch is imported by then)."""
    from bam_runs import distributed  # torch is imported by then: the note follows a checkpoint's loading
    if distributed.is_main():
        click.echo(line, err=True)

# -----------------------------------------------------------------------------
# Errors: one line, never a traceback; exit code 2 for bad input, 3 for a training that failed


class OneLine(click.ClickException):
    """An error shown as one line, `error: ...`, and its exit code."""

    def show(self, file=None):
        click.echo(f"error: {self.message}", err=True)


class BadInput(OneLine):
    exit_code = 2


class TrainingFailed(OneLine):
    """Not bad input: the data and options were fine, but the training's loss or weights stopped being finite
    (bam_minimal.TrainingError). The same one line, with its own exit code, so that a script (or `table`'s caller)
    can tell a run that diverged from a command that was wrong."""
    exit_code = 3


def input_errors():
    """The bad-input exceptions: the data layer's (which the twin and the course kit raise, or subclass) and,
    once imported, the reference's (looked up, not imported: no torch for an error). Two classes because
    bam_minimal.py stands alone and imports nothing of the project."""
    reference = sys.modules.get("bam_minimal")
    return (bam_data.InputError,) + ((reference.InputError,) if reference is not None else ())


def training_errors():
    """The reference's TrainingError once it is imported (a training needs torch, so it is by then)."""
    reference = sys.modules.get("bam_minimal")
    return (reference.TrainingError,) if reference is not None else ()


class Group(click.Group):
    """A click group that turns every kind of bad input into one line and exit code 2, and a training that failed
    into one line and exit code 3."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as e:  # a bad flag or value: click's usage block becomes our one line
            where = e.ctx.command_path if e.ctx else ctx.command_path
            raise BadInput(f"{e.format_message()} (fix: see `{where} --help`)") from None
        except click.ClickException:
            raise
        except OSError as e:  # a folder where a file should be, a missing folder, a full disk, ...
            raise BadInput(f"{e.filename or ''}: {e.strerror or e} (fix: check the path)") from None
        except MemoryError:
            raise BadInput("out of memory (fix: a smaller --dim or batch; item ids must be 1..n without gaps, "
                           "since the item table has one row per id up to the largest)") from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as e:
            if isinstance(e, input_errors()):
                raise BadInput(str(e)) from None
            if isinstance(e, training_errors()):
                raise TrainingFailed(str(e)) from None
            raise
