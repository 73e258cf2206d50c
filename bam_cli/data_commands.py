"""
bam_cli/data_commands.py: the torch-free data commands: `data stats`, `data remap`, `data synth`, `prepare amazon2023`.

    python cli.py data stats ../shared/data/lastfm/LastFM.txt
    python cli.py data remap ids-with-gaps.txt --out remapped.txt
    python cli.py data synth --out synth.txt
    python cli.py prepare amazon2023 All_Beauty.csv --out beauty.txt
    python cli.py prepare categories ml-100k.item --data ml-100k.inter --out ml100k.categories.txt

The work is in the data layer (bam_data): formats, stats.table1, amazon, categories.
"""
import os

import click

import bam_data
from bam_cli import options
from bam_cli.options import Group, output_path
from bam_data import files, formats, synth

# -----------------------------------------------------------------------------
# prepare


@click.group(cls=Group)
def prepare():
    """Prepare raw public data in the official format."""


@prepare.command("amazon2023")
@click.argument("path")
@click.option("--out", required=True, help="the official-format file to write (id maps go beside it)")
@click.option("--kcore", type=int, default=5, show_default=True, help="iterative k-core on users and items")
@click.option("--dedup/--keep-repeats", default=True, show_default=True,
              help="keep only a user's first interaction with an item")
def amazon2023(path, out, kcore, dedup):
    """Amazon Reviews 2023: the 5-core CSV (user_id,parent_asin,rating,timestamp) or a raw review
    .jsonl / .jsonl.gz -> the official format, with Table 1's statistics."""
    from bam_data.amazon import prepare_amazon2023
    if kcore < 1:
        raise bam_data.InputError(f"--kcore {kcore}: must be 1 or more")
    with files.output_folder(out):  # a failed prepare leaves no empty folder behind
        stats, maps = prepare_amazon2023(path, out, kcore, dedup)
    click.echo(f"{'users':<14}{stats['users']:,}\n{'items':<14}{stats['items']:,}\n"
               f"{'interactions':<14}{stats['interactions']:,}\n{'density':<14}{stats['density']:.4%}\n"
               f"{'avg length':<14}{stats['avg_len']:.2f}\n"
               f"(read {stats['raw_interactions']:,} rows, {stats['after_dedup']:,} after dedup, {kcore}-core)")
    click.echo(f"wrote {out} and {maps}")

@prepare.command("categories")
@click.argument("path")
@click.option("--data", "data_path", default=None, callback=options.existing,
              help="the RecBole .inter file the .item file belongs to (its item numbering)")
@click.option("--maps", default=None, callback=options.existing,
              help="the .maps.json that `prepare amazon2023` wrote (our id -> parent_asin)")
@click.option("--out", required=True, callback=output_path, help="the categories file to write (`item category`)")
def categories_cmd(path, data_path, maps, out):
    """Item categories for diversity@N, in bam's item ids: from a RecBole .item file with a `class` column
    (MovieLens: each movie's first genre) with --data, or from Amazon Reviews 2023 metadata
    (meta_*.jsonl[.gz]: the leaf of the category path) with --maps. bam_data/categories.py says why."""
    from bam_data import categories
    if (data_path is None) == (maps is None):
        raise bam_data.InputError("prepare categories: pass --data (a RecBole .item file) or --maps (Amazon "
                                  "metadata), one of the two")
    if data_path is not None:
        mapping = categories.from_recbole_items(path, formats.read(data_path)[1]["item_map"])
    else:
        mapping = categories.from_amazon_meta(path, categories.read_item_maps(maps))
    if not mapping:
        raise bam_data.InputError(f"{path}: no category for any item of the data (fix: check that the file "
                                  "belongs to the data)")
    categories.write_categories(out, mapping)
    click.echo(f"wrote {out}: {len(mapping):,} items in {len(set(mapping.values())):,} categories")

# -----------------------------------------------------------------------------
# data


@click.group(cls=Group)
def data():
    """Inspect data, or write the synthetic dataset."""


@data.command()
@click.argument("path")
@click.option("--format", "fmt", type=click.Choice(formats.FORMATS), default="auto", show_default=True)
@click.option("--json", "json_out", default=None, callback=output_path,
              help="also write the statistics to this JSON file")
def stats(path, fmt, json_out):
    """Users, items, interactions, sequence lengths and density (the paper's Table 1)."""
    from bam_data.dataset_stats import table1
    seqs, info = formats.read(path, fmt)
    out = dict(format=info["format"], **table1(seqs))
    for k, v in out.items():
        click.echo(f"{k:<14}{v}")
    for note in info.get("notes", []):
        click.echo(f"note: {note}")
    if json_out:
        files.atomic_json(json_out, out)


@data.command()
@click.argument("path")
@click.option("--format", "fmt", type=click.Choice(formats.FORMATS), default="auto", show_default=True)
@click.option("--out", required=True, callback=output_path, help="the official-format file to write")
def remap(path, fmt, out):
    """Number the items 1..n in order of first appearance (users keep their ids), so that the item
    table has one row per item; the map from new to old ids goes beside --out as .items.json."""
    seqs, _ = formats.read(path, fmt)
    remapped, new_to_old = formats.remap_items(seqs)
    formats.write_official(remapped, out)
    files.atomic_json(out + ".items.json", new_to_old)
    click.echo(f"wrote {out} ({len(new_to_old):,} items, largest id before {max(new_to_old.values()):,}) "
               f"and {out}.items.json")


@data.command("synth")
@click.option("--out", required=True, help="file to write; the ground truth goes beside it as .truth.json, each "
              "item's topic as its category in .categories.txt")
@click.option("--users", type=int, default=synth.SynthConfig.users, show_default=True)
@click.option("--items", type=int, default=synth.SynthConfig.items, show_default=True)
@click.option("--topics", type=int, default=synth.SynthConfig.topics, show_default=True)
@click.option("--mean-len", type=int, default=synth.SynthConfig.mean_len, show_default=True)
@click.option("--seed", type=int, default=synth.SynthConfig.seed, show_default=True)
def synth_cmd(out, users, items, topics, mean_len, seed):
    """Write the synthetic dataset (planted topics) in the official format."""
    if topics > items or min(users, items, topics) < 1 or mean_len < 5:
        raise bam_data.InputError("--users, --items, --topics must be positive, topics <= items, --mean-len >= 5")
    seqs, truth = synth.generate(synth.SynthConfig(users, items, topics, mean_len=mean_len, seed=seed))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    truth_path = synth.write(seqs, truth, out)
    click.echo(f"wrote {out} ({sum(map(len, seqs.values()))} interactions), {truth_path} and "
               f"{os.path.splitext(out)[0]}.categories.txt")


COMMANDS = [prepare, data]
