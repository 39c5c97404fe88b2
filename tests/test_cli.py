"""The command line as a whole: help for every command, `tables`, `info`, hf:ID ingest, stdout/stderr."""

from __future__ import annotations

import json

import click
import pytest

import curate
from curate.cli import main
from curate.tables import TABLES

from .conftest import hh_row, query, write_jsonl


def commands(group: click.Group, prefix=()):
    ctx = click.Context(group)
    for name in sorted(group.list_commands(ctx)):
        cmd = group.get_command(ctx, name)
        yield prefix + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from commands(cmd, prefix + (name,))


ALL_COMMANDS = list(commands(main))


# -- meta: every command documents itself --------------------------------------------------------
def test_the_commands_of_this_issue_exist():
    assert {"ingest", "sql", "tables", "info"} <= {path[0] for path, _ in ALL_COMMANDS}


@pytest.mark.parametrize("path, cmd", ALL_COMMANDS, ids=[" ".join(p) for p, _ in ALL_COMMANDS])
def test_every_command_has_help(cli, path, cmd):
    assert (cmd.help or "").strip(), f"curate {' '.join(path)} has no docstring"
    undocumented = [p.name for p in cmd.params if isinstance(p, click.Option) and not p.help]
    assert undocumented == [], f"curate {' '.join(path)}: options without help: {undocumented}"
    r = cli(*path, "--help")
    assert r.exit_code == 0
    assert r.stdout.startswith(f"Usage: curate {' '.join(path)} ")
    assert cmd.help.strip().splitlines()[0] in r.stdout


def test_top_level_help_and_version(cli):
    r = cli("--help")
    assert r.exit_code == 0
    for path, cmd in ALL_COMMANDS:
        if len(path) == 1:  # subcommands are listed by their group's --help
            assert f"  {path[-1]} " in r.stdout
    r = cli("--version")
    assert (r.exit_code, r.stdout) == (0, f"curate, version {curate.__version__}\n")


# -- tables -------------------------------------------------------------------------------------
def test_tables_lists_the_contract(cli):
    r = cli("tables")
    assert r.exit_code == 0
    for t in TABLES.values():
        assert f"{t.name}  (one row per " in r.stdout  # rich wraps a title to its table's width
        for c in t.columns:
            assert c.name in r.stdout


def test_tables_json(cli):
    r = cli("tables", "--json")
    assert r.exit_code == 0
    got = json.loads(r.stdout)
    assert list(got) == list(TABLES)
    assert [c["name"] for c in got["pairs"]["columns"]] == [
        "pair_id", "prompt", "chosen", "rejected", "chosen_full", "rejected_full", "source", "subset", "split",
        "source_row", "role", "flags", "format", "ingest_id",
    ]
    assert got["rejects"]["grain"] == "input row not ingested"
    assert {c["name"] for c in got["rejects"]["columns"]} >= {"source", "line", "reason", "raw"}


def test_tables_one(cli):
    r = cli("tables", "rejects", "--json")
    assert r.exit_code == 0
    assert list(json.loads(r.stdout)) == ["rejects"]


def test_tables_unknown(cli):
    r = cli("tables", "nosuch")
    assert r.exit_code == 1
    assert r.stderr == (
        "Error: unknown table 'nosuch'; the tables are pairs, rejects, generations, embeddings, "
        "embedding_models, sample_similarities, similarities, subsets, subset_pairs, strength, runs, judgments, "
        "winrates.\n"
    )


def test_documented_tables_match_the_views(filled_ws):
    for t in TABLES.values():
        cols = query(filled_ws, "select column_name, data_type from information_schema.columns "
                                "where table_name = $t order by ordinal_position", {"t": t.name})
        assert [c for c, _ in cols] == t.column_names, t.name
        assert [ty for _, ty in cols] == [c.type for c in t.columns], t.name


# -- info ---------------------------------------------------------------------------------------
@pytest.fixture
def mixed_ws(cli, ws, tmp_path):
    src = write_jsonl(tmp_path / "helpful-base" / "train.jsonl", [
        hh_row("a", "b", "c"),
        {"chosen": "\n\nHuman: x\n\nAssistant:", "rejected": "\n\nHuman: x\n\nAssistant: no"},
        "not json",
    ])
    r = cli("ingest", src, "-w", ws, "-q", "--skip-invalid", "--sft-fraction", "1")
    assert r.exit_code == 0
    return ws, src


def test_info_json(cli, mixed_ws):
    ws, src = mixed_ws
    r = cli("info", "-w", ws, "--json")
    assert r.exit_code == 0
    assert json.loads(r.stdout) == {
        "workspace": str(ws),
        "tables": {"pairs": 2, "rejects": 1, **{t: 0 for t in TABLES if t not in ("pairs", "rejects")}},
        "pairs_by_source": [{"source": str(src), "subset": "helpful-base", "split": "train", "role": "sft", "pairs": 2}],
        "flags": {"empty_response": 1},
        "rejects": [{"source": str(src), "reason": "invalid_json", "rows": 1}],
        "ingests": 1,
    }


def test_info_table(cli, mixed_ws):
    ws, src = mixed_ws
    r = cli("info", "-w", ws)
    assert r.exit_code == 0
    assert r.stderr == ""
    assert r.stdout.startswith(f"workspace {ws}  (1 ingests)\n")
    for needle in ("tables", "pairs", "helpful-base", "train", "sft", "empty_response", "invalid_json"):
        assert needle in r.stdout


# -- ingest output --------------------------------------------------------------------------------
def test_ingest_summary_goes_to_stderr(cli, ws, tmp_path):
    src = write_jsonl(tmp_path / "d" / "x.jsonl", [hh_row("a", "b", "c"), hh_row("d", "e", ""), "[]"])
    r = cli("ingest", src, "-w", ws, "--skip-invalid", "--sft-fraction", "1")
    assert r.exit_code == 0
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    manifest = next((ws / "manifests").glob("ingest-*.json")).name
    assert lines[-5:] == [
        "read 3 rows: 2 new pairs, 0 already in the workspace, 1 rejected",
        '  rejects: not_an_object 1  (see: curate sql "select * from rejects")',
        "  flagged: empty_response 1",
        "  roles: sft 2",
        f"  workspace: {ws}  manifest: {manifest}",
    ]


def test_quiet_ingest_prints_nothing(cli, ws, hh_file):
    r = cli("ingest", hh_file, "-w", ws, "--quiet")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")


def test_ingest_needs_an_input(cli, ws):
    r = cli("ingest", "-w", ws)
    assert r.exit_code == 2
    assert "Error: Missing argument 'INPUTS...'." in r.stderr


# -- hf:ID through datasets.load_dataset ------------------------------------------------------------
@pytest.fixture
def offline_datasets(tmp_path, monkeypatch):
    pytest.importorskip("datasets", reason="hf:ID needs the optional `datasets` package (curate[hub])")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def test_hf_dataset_from_a_local_folder(cli, ws, tmp_path, offline_datasets):
    """--subset is the data_dir (HH-RLHF's layout), --split the split; the real load_dataset reads it."""
    hub = tmp_path / "hub"
    write_jsonl(hub / "helpful-base" / "train.jsonl", [hh_row(f"q{i}", "yes", "no") for i in range(3)])
    write_jsonl(hub / "harmless-base" / "train.jsonl", [hh_row("other", "yes", "no")])
    r = cli("ingest", f"hf:{hub}", "--subset", "helpful-base", "--split", "train", "-w", ws, "-q")
    assert r.exit_code == 0, r.output
    assert r.stdout == ""
    assert query(ws, "select source, subset, split, source_row, prompt from pairs order by source_row") == [
        (f"hf:{hub}", "helpful-base", "train", i, f"\n\nHuman: q{i}\n\nAssistant:") for i in range(3)
    ]


def test_hf_dataset_that_cannot_be_loaded(cli, ws, tmp_path, offline_datasets):
    hub = tmp_path / "hub"
    write_jsonl(hub / "helpful-base" / "train.jsonl", [hh_row("q", "yes", "no")])
    r = cli("ingest", f"hf:{hub}", "--subset", "helpful-base", "--split", "test", "-w", ws, "-q")
    assert r.exit_code == 1
    # datasets' own progress bars come first: --quiet does not reach them
    assert r.stderr.splitlines()[-1].startswith(
        f"Error: hf:{hub}: could not load the dataset (data_dir='helpful-base', split='test', revision=None): "
    )
    assert "Traceback" not in r.stderr


def test_the_workspace_option_on_the_group_and_on_each_command(cli, filled_ws, tmp_path, monkeypatch):
    """`curate -w WS sql ...` was refused (issue 12): -w/--workspace works on the group and on every command, a
    command's own -w wins, and CURATE_WORKSPACE applies when neither is given."""
    r = cli("-w", filled_ws, "sql", "select count(*) as n from pairs", "-f", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == [{"n": 6}]
    r = cli("--workspace", tmp_path / "elsewhere", "sql", "select count(*) as n from pairs", "-f", "json",
            "-w", filled_ws)
    assert r.exit_code == 0 and json.loads(r.stdout) == [{"n": 6}]  # the command's own -w wins
    r = cli("-w", filled_ws, "info", "--json")
    assert json.loads(r.stdout)["tables"]["pairs"] == 6
    r = cli("-w", filled_ws, "report", "intersect")  # a nested command sees the group's -w too
    assert "no subsets yet" in r.stderr
    monkeypatch.setenv("CURATE_WORKSPACE", str(filled_ws))
    r = cli("sql", "select count(*) as n from pairs", "-f", "json")
    assert json.loads(r.stdout) == [{"n": 6}]
    r = cli("-w", tmp_path / "none", "sql", "select 1")  # the group's -w beats the environment
    assert r.exit_code == 1 and f"No curate workspace at {tmp_path / 'none'}" in r.stderr


# -- one set of options (issue 13) ----------------------------------------------------------------------
LEAVES = [(path, cmd) for path, cmd in ALL_COMMANDS if not isinstance(cmd, click.Group)]


def option_names(cmd: click.Command) -> set[str]:
    return {o for p in cmd.params if isinstance(p, click.Option) for o in p.opts + p.secondary_opts}


@pytest.mark.parametrize("path, cmd", LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_command_has_the_shared_options(path, cmd):
    """-w/--workspace, -q/--quiet and --json on every command, meaning the same thing everywhere."""
    names = option_names(cmd)
    assert {"-w", "--workspace", "-q", "--quiet", "--json"} <= names, f"curate {' '.join(path)} lacks " \
        f"{sorted({'-w', '--workspace', '-q', '--quiet', '--json'} - names)}"


def test_a_short_flag_means_one_thing_across_commands():
    meaning: dict[str, set[str]] = {}
    for _, cmd in LEAVES:
        for p in cmd.params:
            if not isinstance(p, click.Option):
                continue
            long = next((o for o in p.opts if o.startswith("--")), p.name)
            for o in p.opts:
                if not o.startswith("--"):
                    meaning.setdefault(o, set()).add(long)
    assert {k: v for k, v in meaning.items() if len(v) > 1} == {}
    assert meaning["-p"] == {"--param"} and meaning["-o"] == {"--output"} and meaning["-s"] == {"--strategy"}
