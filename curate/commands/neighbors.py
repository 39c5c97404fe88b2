"""`curate neighbors`: nearest stored responses to a text or to a pair's response (FAISS)."""

from __future__ import annotations

import click

from .options import emit_frame, output_options, quiet_option, workspace_option


@click.command()
@workspace_option
@click.option("--text", "-t", default=None, help="Query text (embedded with the workspace's model if not stored).")
@click.option("--pair-id", default=None, help="Query with this pair's response (full id or a unique prefix).")
@click.option("--role", type=click.Choice(["chosen", "rejected", "generation"]), default="chosen", show_default=True,
              help="Which response of --pair-id to query with.")
@click.option("--branch", default="main", show_default=True, help="Branch of the generation for --role generation.")
@click.option("--iteration", "-i", type=int, default=None,
              help="Iteration of the generation for --role generation (default: the latest).")
@click.option("--sample", type=int, default=0, show_default=True,
              help="Sample of the generation for --role generation.")
@click.option("-k", "k", type=int, default=10, show_default=True, help="Number of neighbours (distinct texts).")
@click.option("--model", "-m", default=None, help="Embedding model (default: the only one in the workspace).")
@click.option("--index", "index_kind", type=click.Choice(["auto", "flat", "ivf"]), default="auto", show_default=True,
              help="flat: exact search; ivf: approximate (inverted lists); auto: flat up to 100,000 vectors.")
@click.option("--max-pairs", type=int, default=5, show_default=True,
              help="Pair ids listed per neighbour (n_pairs counts them all).")
@click.option("--width", type=int, default=60, show_default=True, help="Column width in --format table.")
@output_options
@quiet_option
def neighbors(workspace, text, pair_id, role, branch, iteration, sample, k, model, index_kind, max_pairs, width,
              fmt, output, quiet):
    """Nearest stored responses (chosen, rejected, generations) by cosine similarity.

    One row per distinct text: its rank, similarity, the roles and pairs it occurs in. With
    --pair-id the pair's own response is left out. The FAISS index is built on first use under
    <workspace>/indexes/ and rebuilt when the vectors change.
    """
    from ..neighbors import neighbors as run
    from ..progress import quiet_libraries
    from ..workspace import Workspace

    quiet_libraries(quiet)

    def building():
        if not quiet:
            click.echo("building the vector index (once per change of the vectors)...", err=True)

    hits, index = run(Workspace(workspace), text=text, pair_id=pair_id, role=role, branch=branch,
                      iteration=iteration, sample=sample, k=k, model=model, index_kind=index_kind,
                      max_pairs=max_pairs, on_build=building)
    if not quiet:
        how = ("built" if index.saved else "built in memory, not saved: the workspace is not writable,") \
            if index.built else "loaded"
        click.echo(f"{index.kind} index over {index.size:,} vectors of {index.model_id} ({how} in "
                   f"{index.seconds:.2f} s)", err=True)
    emit_frame(hits if fmt != "table" else hits.drop("text_hash"), fmt, output, k, width, quiet)
