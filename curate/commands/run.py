"""`curate run` (FRFT(alpha) from a TOML config) and `curate runs` (the lineage of its steps)."""

from __future__ import annotations

import json
import sys

import click

from ..errors import CurateError
from .options import err, quiet_option, workspace_option


@click.command("run")
@click.option("--config", "-c", "config_path", required=True, type=click.Path(dir_okay=False),
              help="TOML config (see configs/demo.toml and configs/frft-hh.toml).")
@click.option("--data", "data", multiple=True, metavar="PATH",
              help="Use these preference files (or hf:IDs) instead of the config's [data] sources. Repeatable.")
@workspace_option
@click.option("--resume", is_flag=True, help="Continue the run: steps that are done are skipped (and say so).")
@click.option("--dry-run", is_flag=True, help="Print the plan and a cost estimate (texts, tokens, steps, time); "
              "run nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON: the estimate with --dry-run, "
              "else what the run's report made (paths, the intersection rows).")
@quiet_option
def run(config_path, data, workspace, resume, dry_run, as_json, quiet):
    """Run FRFT(alpha) end to end from a TOML config.

    SFT, then per iteration: generate, embed, score, and per strategy filter, reward model and PPO.

    Every step is recorded in the `runs` table (see `curate runs`); a run that stops, however it stops,
    continues with --resume from the last finished step.

    \b
    Examples:
      curate run --config configs/demo.toml               # small and offline, on CPU
      curate run --config configs/demo.toml --data my-pairs.jsonl.gz
      curate run --config configs/frft-hh.toml --dry-run  # what the paper's setup costs here
      curate run --config configs/frft-hh.toml --resume
    """
    from ..run.config import load

    cfg = load(config_path)
    if data:
        cfg.data.sources = list(data)
    if workspace:  # -w, or the group's: instead of [run] workspace
        cfg.run.workspace = workspace
    if dry_run:
        _dry_run(cfg, as_json)
        return
    from ..display import console as make_console
    from ..progress import quiet_libraries
    from ..run.plan import Runner

    quiet_libraries(quiet)  # the libraries' own bars (GGUF conversion, weight loading) follow curate's rule

    console = make_console(stderr=True, width=None if sys.stderr.isatty() else 160)
    runner = Runner(cfg, resume=resume, quiet=quiet, echo=(lambda m: None) if quiet else
                    (lambda m: console.print(m, soft_wrap=True)))
    if not quiet:
        from ..run.estimate import estimate

        est = estimate(cfg)
        err(f"run {cfg.run.name!r}: alpha {cfg.run.alpha}, strategies {', '.join(cfg.run.strategies)}; workspace "
            f"{runner.ws.root}, checkpoints {runner.ckpt} (config sha256 {cfg.sha256[:12]})")
        err(f"expected time: {'about' if est['complete'] else 'at least'} {_duration(est['total_seconds'])} for the "
            "whole run (`--dry-run` shows the work per iteration)")
    resume_cmd = f"`curate run --config {config_path} --resume`"
    try:
        runner.execute()
    except KeyboardInterrupt:
        err(f"\ninterrupted during {runner.current}: finished steps are recorded; {resume_cmd} continues from there.")
        sys.exit(130)
    except CurateError as e:
        where = f"step {runner.current}: " if runner.current else ""
        raise CurateError(f"{where}{e}" + (f" Then {resume_cmd} continues from this step." if runner.current
                                           else "")) from None
    report = runner.done.get(runner.report_key, {})
    if not quiet:
        _summary(runner, report, console)
    if as_json:
        click.echo(json.dumps({"run": runner.run_id, "ran": runner.ran, "skipped": runner.skipped, **report},
                              indent=2, default=str))
    else:
        click.echo(report.get("html", ""))


def _summary(runner, report: dict, console) -> None:
    from ..display import table

    err(f"\nrun {runner.run_id!r} finished: {len(runner.ran)} steps run, {len(runner.skipped)} skipped as done")
    rows = report.get("intersect_rows") or []
    if rows:
        cols = ["strategy", "iteration_a", "iteration_b", "pairs_a", "pairs_b", "common_pairs", "share_pairs",
                "jaccard_pairs"]
        cols = [c for c in cols if c in rows[0]]
        console.print(table(cols, ([f"{r[c]:.3f}" if isinstance(r[c], float) else r[c] for c in cols] for r in rows),
                            title="subsets of iteration a and b: how much they intersect"))
    ws = runner.ws.root
    err(f"  subsets:       {', '.join(report.get('subsets', []))}  (curate subsets -w {ws})")
    for key, what in (("intersect", "intersection"), ("intersect_png", "  as a plot"), ("cdf", "CDF plot"),
                      ("html", "HTML report")):
        if report.get(key):
            err(f"  {what + ':':<14} {report[key]}")
    err(f"  checkpoints:   {runner.ckpt}")
    err(f"  lineage:       curate runs -w {ws} --run {runner.run_id}")


def _dry_run(cfg, as_json: bool) -> None:
    from ..display import console as make_console
    from ..display import table
    from ..run.estimate import estimate

    est = estimate(cfg)
    if as_json:
        click.echo(json.dumps(est, indent=2))
        return
    console = make_console(width=160)

    def n(v) -> str:
        return "?" if v is None else f"{v:,}"

    console.print(f"run {est['run']!r} in {est['workspace']}: {n(est['pref_pairs'])} pref pairs, "
                  f"{n(est['sft_pairs'])} sft pairs (counts from {est['counts_from']})")
    rows = []
    for it in est["iterations"]:
        secs = it["seconds"]
        known = sum(v for v in secs.values() if v is not None)
        unknown = [k for k, v in secs.items() if v is None]
        rows.append((it["iteration"], it["policies_sampled"], n(it["prompts"]), n(it["tokens_to_generate"]),
                     n(it["texts_to_embed"]), n(it["rm_steps"]), n(it["ppo_steps"]),
                     _duration(known) + (f" + {', '.join(unknown)}" if unknown else "")))
    console.print(table(["iteration", "policies sampled", "prompts", "tokens to generate", "texts to embed",
                         "RM steps", "PPO steps", "expected time"], rows, title="work per iteration (all branches)"))
    sft = "?" if est["sft_seconds"] is None else _duration(est["sft_seconds"])
    console.print(f"SFT: {n(est['sft_rows'])} rows, {sft}. Total: {'about' if est['complete'] else 'at least'} "
                  f"{_duration(est['total_seconds'])} (tokens are an upper bound: responses may stop early).")
    console.print("throughput used (the defaults were measured with SmolLM2-135M and all-MiniLM-L6-v2 on a 2-core "
                  "CPU; a finished run in this workspace replaces them with its own):")
    for k, v in est["throughput"].items():
        console.print(f"  {k:<24} {v['value']:>10,.2f}  ({v['from']})")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@click.command("runs")
@workspace_option
@click.option("--config", "-c", "config_path", default=None, type=click.Path(dir_okay=False),
              help="Read the workspace and run name from this config.")
@click.option("--run", "run_id", default=None, help="Show only this run.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON lines.")
@quiet_option
def runs(workspace, config_path, run_id, as_json, quiet):
    """The steps of `curate run`: lineage from subset to RM to policy.

    Each step with what it started from and what it made, its status and time.

    \b
    Examples:
      curate runs -w workspace-demo
      curate runs --config configs/demo.toml
      curate sql -w workspace-demo "select step, branch, iteration, outputs->>'checkpoint' from runs"
    """
    from ..runs import lineage_rows, runs_rows
    from ..workspace import Workspace

    if config_path:
        from ..run.config import load

        cfg = load(config_path)
        workspace = workspace or cfg.run.workspace
        run_id = run_id or cfg.run.name
    ws = Workspace(workspace).require()
    if as_json:
        for r in runs_rows(ws, run_id):
            click.echo(json.dumps(r, default=str))
        return
    rows = lineage_rows(ws, run_id)
    if not rows:
        if quiet:
            return
        err(f"No runs{' named ' + repr(run_id) if run_id else ''} in {ws.root}: start one with "
            "`curate run --config configs/demo.toml`.")
        return
    from ..display import literal, print_table

    colour = {"done": "green", "running": "yellow", "failed": "red", "interrupted": "red"}
    print_table(["run", "step", "branch", "it", "status", "from", "made", "s"],
                [(r["run_id"], r["step"], r["branch"], r["iteration"], literal(r["status"], colour.get(r["status"])),
                  r["from"], r["made"], f"{r['seconds']:.1f}" if r["seconds"] is not None else "") for r in rows],
                title=f"runs in {ws.root} (paths relative to it)", fold=("from", "made"))

