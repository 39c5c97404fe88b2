"""The `curate` command line: the group, its global options, and the commands of curate/commands/.

Each command parses options, calls one library function, and prints. Heavy libraries (polars, torch,
sentence-transformers) are imported inside the commands that need them, so `curate sql`, `info` and `tables`
start in a fraction of a second.
"""

from __future__ import annotations

import click

from . import __version__
from .settings import FriendlyErrors

# name -> where the command lives; a command's module is imported only when that command runs (or --help lists
# them all), so `curate sql` loads neither the trainers' configs nor the embedder's
COMMANDS = {
    "ingest": "ingest:ingest", "info": "info:info", "tables": "info:tables", "sql": "sql:sql",
    "generations": "generations:generations", "generate": "generate:generate", "embed": "embed:embed",
    "score": "embed:score", "neighbors": "neighbors:neighbors", "filter": "filter:filter_",
    "subsets": "filter:subsets", "explain": "filter:explain", "report": "report:report", "export": "export:export",
    "train": "train:train", "eval": "eval:eval_", "run": "run:run", "runs": "run:runs", "serve": "serve:serve",
    "strength": "strength:strength", "check": "check:check",
}


class CurateGroup(FriendlyErrors, click.Group):
    """Library errors become one clear line, with no traceback for a user's mistake; commands load lazily."""

    def list_commands(self, ctx):
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx, name):
        if name not in self.commands and name in COMMANDS:
            import importlib

            module, attr = COMMANDS[name].split(":")
            self.commands[name] = getattr(importlib.import_module(f"curate.commands.{module}"), attr)
        return self.commands.get(name)


@click.group(cls=CurateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--workspace", "-w", default=None, type=click.Path(file_okay=False),
              help="Workspace for the command (its own -w wins; default: env CURATE_WORKSPACE, else ./workspace).")
@click.version_option(__version__, prog_name="curate")
def main(workspace):
    """Data-centric filtering and curation of RLHF preference data (FRFT)."""


if __name__ == "__main__":
    main()
