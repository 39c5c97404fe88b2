"""`curate strength`: preference strength of every pref pair (Secrets of RLHF II, section 2.2)."""

from __future__ import annotations

import dataclasses
import json

import click

from ..settings import click_options
from ..strength import StrengthSettings
from .options import json_option, quiet_option, workspace_option


@click.command()
@workspace_option
@click_options(StrengthSettings)
@json_option
@quiet_option
def strength(workspace, as_json, quiet, **options):
    """How strongly each pref pair's label holds: mean, std, category.

    Out of fold by default: each pair is scored only by models that never saw its label. With --inject-flips F
    it flips F of the labels in a scratch copy and reports how well the detector finds them (stores nothing).
    """
    from ..display import print_table
    from ..progress import stage_progress
    from ..strength import compute_strength
    from ..workspace import Workspace

    settings = StrengthSettings(**options)
    with stage_progress(quiet) as progress:
        r = compute_strength(Workspace(workspace), settings, progress)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(r), indent=2))
        return
    if quiet:
        return
    if r.injected:
        i = r.injected
        click.echo(f"{r.method} on {r.features}: {i['flipped']:,} of {i['pairs']:,} labels flipped (seed {i['seed']})",
                   err=True)
        print_table(["measure", "value", "chance"],
                    [("AUROC", f"{i['auroc']:.3f}", "0.500"),
                     ("average precision", f"{i['average_precision']:.3f}", f"{i['base_rate']:.3f}"),
                     (f"precision at k = {i['k']:,}", f"{i['precision_at_k']:.3f}", f"{i['base_rate']:.3f}")],
                    title="finding planted flips (score: -mean strength)")
        return
    what = "reused (same settings, same pairs)" if r.reused else f"computed in {r.seconds:.1f} s"
    click.echo(f"{r.identity}: {r.pairs:,} pref pairs, {what}", err=True)
    print_table(["category", "pairs", "share"],
                [(c, f"{n:,}", f"{n / max(r.pairs, 1):.1%}") for c, n in r.categories.items()],
                title="strength (incorrect: mean < 0; ambiguous: near 0; strong)")
    click.echo(f"query it: curate sql \"select category, count(*), avg(mean) from strength where identity = "
               f"'{r.identity}' group by all\"", err=True)
