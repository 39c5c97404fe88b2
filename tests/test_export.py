"""`curate export`: a subset as a dataset folder / Parquet / JSONL with its provenance, and pushed to a loopback Hub."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import sys
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from curate.errors import CurateError
from curate.export import COLUMNS, DATA_FILE, PROVENANCE_KEY, export_subset, push_to_hub
from curate.faults import StorageError
from curate.filters import run_filter, strategy_path

from .conftest import HAND_SIMS, hand_scored_ws, query
from .hub_server import HubServer, point_hf_client_at

COLS = [c[0] for c in COLUMNS]
TOKEN = "hf_exportTestToken_9f8e7d"
# with eps 0.2 and size 6, split-even picks p9, p0, p1 (pos half) and p8, p3, p1 (neg half): p1 twice
TABLE = HAND_SIMS
SPLIT_EVEN = "frft-split-even-it1"


@pytest.fixture
def ews(cli, tmp_path, monkeypatch):
    """The hand-scored workspace of conftest with a split-even subset (eps 0.2, size 6)."""
    monkeypatch.chdir(tmp_path)  # the default target datasets_out/ lands here, not in the repository
    ws = hand_scored_ws(cli, tmp_path)
    run_filter(ws, "split-even", eps=0.2, size=6, iteration=1)
    return ws


def subset_rows(ws, name=SPLIT_EVEN):
    """What the export must hold: subset_pairs joined to pairs, in rank order."""
    return query(ws.root, "select p.prompt, p.chosen, p.rejected, p.chosen_full, sp.pair_id, sp.rank, sp.picked_by "
                          "from subset_pairs sp join subsets s using (subset_id) join pairs p using (pair_id) "
                          "where s.name = $n order by sp.rank", {"n": name})


def front_matter(card: str) -> dict:
    import yaml

    assert card.startswith("---\n")
    return yaml.safe_load(card.split("\n---\n", 1)[0][4:])


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------------------------------------- folder


def test_folder_loads_with_datasets_in_rank_order_with_both_copies_of_a_twice_picked_pair(ews, tmp_path):
    import datasets

    r = export_subset(ews, SPLIT_EVEN)

    assert r.path == Path("datasets_out") / SPLIT_EVEN and (r.rows, r.distinct_pairs, r.picked_twice) == (6, 5, 1)
    assert sorted(files_of(r.path)) == ["README.md", "curate_provenance.json", DATA_FILE]
    train = datasets.load_dataset(str(r.path), cache_dir=str(tmp_path / "hf-cache"))["train"]
    assert train.column_names == COLS == ["prompt", "chosen", "rejected", "pair_id", "rank", "score", "picked_by",
                                          "pos_sim", "neg_sim", "flipped"]
    assert train["flipped"] == [False] * 6 and train.features["flipped"].dtype == "bool"
    got = train.to_list()
    want = subset_rows(ews)
    assert [x["rank"] for x in got] == [1, 2, 3, 4, 5, 6]
    assert [(x["prompt"], x["chosen"], x["rejected"], x["pair_id"], x["rank"], x["picked_by"]) for x in got] == [
        (p, c, rj, pid, rank, by) for p, c, rj, _, pid, rank, by in want]
    assert all(x["prompt"] + x["chosen"] == full for x, (*_, full, _, _, _) in zip(got, want))
    # p1 picked by both halves: kept twice, once per half, each with its half's score
    p1 = [(x["picked_by"], x["score"]) for x in got if ews.name_of[x["pair_id"]] == "p1"]
    assert sorted(p1) == [("neg", 0.90625), ("pos", 0.90625)]
    assert [(ews.name_of[x["pair_id"]], x["pos_sim"], x["neg_sim"]) for x in got][0] == ("p8", 0.8125, 1.0)
    assert all((x["pos_sim"], x["neg_sim"]) == TABLE[ews.name_of[x["pair_id"]]] for x in got)
    assert train.features["rank"].dtype == "int32" and train.features["score"].dtype == "float64"

    # TRL's own helpers see the standard (not conversational) preference format with an explicit prompt
    from trl.data_utils import is_conversational, maybe_extract_prompt

    example = {k: got[0][k] for k in ("prompt", "chosen", "rejected")}
    assert not is_conversational(example) and maybe_extract_prompt(example) == example


def test_the_card_has_parseable_yaml_and_the_provenance(ews):
    r = export_subset(ews, SPLIT_EVEN)
    card = (r.path / "README.md").read_text()
    meta = front_matter(card)
    manifest = json.loads((ews.manifests_dir / f"filter-{r.subset_id}.json").read_text())
    assert manifest["sql_sha256"] == hashlib.sha256(strategy_path("split-even").read_bytes()).hexdigest()
    assert meta["license"] == "other"  # the source folder has no LICENSE
    assert {"rlhf", "frft", "preference"} <= set(meta["tags"]) and meta["task_categories"]
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    assert [f["name"] for f in meta["dataset_info"]["features"]] == COLS
    assert meta["dataset_info"]["splits"][0]["num_examples"] == 6
    body = card.split("\n---\n", 1)[1]
    for needle in (f"`{SPLIT_EVEN}` (subset_id `{r.subset_id}`)", "`split-even` (FRFT section 5.3, Part 2)",
                   "eps 0.2, floor 0.8, size 6, aggregate mean, distinct false", "| iteration, branch | 1, `main` |",
                   manifest["sql_sha256"], "| embedding model | m-1 |", "6 (5 distinct pairs, 1 picked twice",
                   "**1 pair(s) appear twice**", str(ews.src), manifest["created_at"].replace("T", " ")[:16],
                   "load_dataset(", "pl.read_parquet(", "-- duckdb"):
        assert needle in body, needle
    ingest = json.loads(next(ews.manifests_dir.glob("ingest-*.json")).read_text())
    assert ingest["sources"][0]["sha256"] in body

    prov = json.loads((r.path / "curate_provenance.json").read_text())
    assert prov == r.provenance
    assert prov["subset"]["strategy"] == "split-even" and prov["subset"]["params"]["eps"] == 0.2
    assert prov["filter_sql"]["sha256"] == manifest["sql_sha256"] and prov["filter_sql"]["sql"] == manifest["sql"]
    assert prov["sources"] == [{"source": str(ews.src), "ingest_id": ingest["ingest_id"], "rows_in_export": 6,
                                **{k: ingest["sources"][0][k] for k in ("sha256", "size", "format", "subset", "split",
                                                                      "revision")}}]
    assert prov["versions"]["curate"] and prov["versions"]["pyarrow"] and prov["exported_at"].endswith("Z")
    # the Parquet file carries the same record
    assert json.loads(pq.read_schema(r.path / DATA_FILE).metadata[PROVENANCE_KEY]) == prov


def test_a_license_file_beside_the_source_names_the_license(ews):
    (ews.src.parent.parent / "LICENSE").write_text("MIT License\n\nCopyright (c) 2022 Anthropic\n")
    r = export_subset(ews, SPLIT_EVEN)
    assert front_matter((r.path / "README.md").read_text())["license"] == "mit"
    assert r.provenance["license_from"] == [str(ews.src.parent.parent / "LICENSE")]


# ---------------------------------------------------------------------------------------------- files


def test_parquet_and_jsonl_load_with_polars_and_carry_the_provenance(ews, tmp_path):
    pq_res = export_subset(ews, SPLIT_EVEN, fmt="parquet")
    js_res = export_subset(ews, SPLIT_EVEN, fmt="jsonl", to=tmp_path / "out" / "rm.jsonl")

    assert pq_res.path == Path("datasets_out") / f"{SPLIT_EVEN}.parquet"
    a = pl.read_parquet(pq_res.path)
    b = pl.read_ndjson(js_res.path)
    assert a.columns == b.columns == COLS
    assert a["pair_id"].to_list() == b["pair_id"].to_list() == [r[4] for r in subset_rows(ews)]
    assert a.cast({"rank": pl.Int64}).equals(b.select(a.columns))
    assert json.loads(pq.read_schema(pq_res.path).metadata[PROVENANCE_KEY])["subset"]["name"] == SPLIT_EVEN
    side = tmp_path / "out" / "rm.jsonl.provenance.json"
    assert json.loads(side.read_text()) == js_res.provenance
    assert js_res.provenance["export_format"] == "jsonl" and js_res.provenance["rows"] == 6


def test_margin_is_written_only_when_given(ews):
    r = export_subset(ews, SPLIT_EVEN, fmt="parquet", to="plain.parquet")
    assert "margin" not in pl.read_parquet(r.path).columns
    margins = pl.DataFrame({"pair_id": list(ews.ids.values()), "margin": [float(i) for i in range(10)]})
    r = export_subset(ews, SPLIT_EVEN, fmt="parquet", to="with_margin.parquet", margin=margins)
    df = pl.read_parquet(r.path)
    assert df.columns == COLS + ["margin"]
    assert df["margin"].to_list() == [float(ews.name_of[p][1:]) for p in df["pair_id"]]
    with pytest.raises(CurateError, match="margin has no value for 1 pair"):
        export_subset(ews, SPLIT_EVEN, fmt="parquet", to="x.parquet",
                      margin=margins.filter(pl.col("pair_id") != ews.ids["p8"]))
    assert not Path("x.parquet").exists()


# ---------------------------------------------------------------------------------------------- targets


def test_an_existing_target_is_refused_without_force_and_replaced_with_force(ews, cli):
    first = export_subset(ews, SPLIT_EVEN)
    (first.path / "stale.txt").write_text("from an older export")

    with pytest.raises(CurateError) as e:
        export_subset(ews, SPLIT_EVEN)
    assert str(e.value) == (f"datasets_out/{SPLIT_EVEN} already exists: pass --force to replace it, or choose "
                            "another --output PATH.")
    assert (first.path / "stale.txt").exists()
    r = cli("export", SPLIT_EVEN, "-w", ews.root)
    assert r.exit_code == 1 and r.stderr == (f"Error: datasets_out/{SPLIT_EVEN} already exists: pass --force to "
                                             "replace it, or choose another --output PATH.\n")

    r = cli("export", SPLIT_EVEN, "-w", ews.root, "--force")
    assert r.exit_code == 0, r.output
    assert r.stdout == f"datasets_out/{SPLIT_EVEN}\n"
    assert r.stderr.startswith(f"exported {SPLIT_EVEN}: 6 rows (5 distinct pairs, 1 picked by both halves (kept "
                               f"twice)) to datasets_out/{SPLIT_EVEN} (folder, ")
    assert f"  replaced the earlier datasets_out/{SPLIT_EVEN}" in r.stderr
    assert sorted(files_of(first.path)) == ["README.md", "curate_provenance.json", DATA_FILE]
    assert leftovers(Path("datasets_out")) == []

    export_subset(ews, SPLIT_EVEN, fmt="jsonl", to="rm.jsonl")
    with pytest.raises(CurateError, match="rm.jsonl already exists"):
        export_subset(ews, SPLIT_EVEN, fmt="jsonl", to="rm.jsonl")
    Path("rm.jsonl").unlink()  # the sidecar alone still blocks: it belongs to the old export
    with pytest.raises(CurateError, match=r"rm.jsonl.provenance.json already exists"):
        export_subset(ews, SPLIT_EVEN, fmt="jsonl", to="rm.jsonl")


@pytest.mark.parametrize("fmt", ["folder", "parquet"])
def test_a_failure_midway_leaves_nothing_half_written(ews, monkeypatch, fmt):
    import pyarrow.parquet

    target = Path("out") / ("ds" if fmt == "folder" else "ds.parquet")

    def broken(table, where, **kw):
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError("No space left on device")

    with monkeypatch.context() as m:
        m.setattr(pyarrow.parquet, "write_table", broken)
        with pytest.raises(StorageError, match=f"could not write {target}: no space left on the device"):
            export_subset(ews, SPLIT_EVEN, fmt=fmt, to=target)  # one line naming the target (issue 19)
    assert Path.cwd() == ews.root.parent and list(Path("out").iterdir()) == []

    # with --force, the old target stays as it was until a new one is complete
    old = export_subset(ews, SPLIT_EVEN, fmt=fmt, to=target)
    before = files_of(target) if fmt == "folder" else target.read_bytes()
    with monkeypatch.context() as m:
        m.setattr(pyarrow.parquet, "write_table", broken)
        with pytest.raises(StorageError):
            export_subset(ews, SPLIT_EVEN, fmt=fmt, to=target, force=True)
    assert (files_of(target) if fmt == "folder" else target.read_bytes()) == before
    assert leftovers(Path("out")) == [] and old.path == target


def test_unknown_and_empty_subsets(ews, cli):
    with pytest.raises(CurateError, match=f"No subset named 'nope'. Known subsets: {SPLIT_EVEN}."):
        export_subset(ews, "nope")
    r = run_filter(ews, "positive", eps=0.2, size=5, iteration=2)  # p7 alone, below the floor
    assert r.rows == 0
    msg = ("Subset 'frft-positive-it2' has 0 rows: there is nothing to export. Make a bigger one with a lower "
           "similarity floor, e.g. `curate filter --strategy positive --eps 0.4 --iteration 2` (the floor is 1 - eps)")
    with pytest.raises(CurateError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        export_subset(ews, "frft-positive-it2")
    out = cli("export", "frft-positive-it2", "-w", ews.root)
    assert out.exit_code == 1 and out.stderr.startswith(f"Error: {msg}")
    assert not Path("datasets_out").exists()
    with pytest.raises(CurateError, match="Unknown export format 'csv'"):
        export_subset(ews, SPLIT_EVEN, fmt="csv")
    out = cli("export", SPLIT_EVEN, "-w", ews.root, "--private")
    assert out.exit_code == 2 and "--private applies to --hub REPO_ID." in out.stderr


# ---------------------------------------------------------------------------------------------- the Hub


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A loopback Hub; huggingface_hub pointed at it with no token (point_hf_client_at drops HF_TOKEN)."""
    with HubServer() as server:
        point_hf_client_at(server, monkeypatch, tmp_path / "hf_home")
        monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)  # an OIDC token would take precedence over HF_TOKEN
        yield server


def with_token(monkeypatch):
    # huggingface_hub 2.4 reads HF_TOKEN from the environment on every call (utils/_auth.py
    # _get_token_from_environment), so setting it after point_hf_client_at is enough: no constant to patch.
    monkeypatch.setenv("HF_TOKEN", TOKEN)


def writes(server, repo="me/ds"):
    return [i for i, (m, p) in enumerate(server.requests)
            if m in ("POST", "PUT") and (p == "/api/repos/create" or p.startswith(f"/api/datasets/{repo}/"))]


def test_push_to_hub_uploads_the_folder_with_the_token_from_hf_token(ews, hub, monkeypatch):
    with_token(monkeypatch)
    r = export_subset(ews, SPLIT_EVEN, repo_id="me/ds")

    url = push_to_hub(r.path, "me/ds", private=True)

    assert url == f"{hub.url}/datasets/me/ds"
    assert hub.dataset_files("me/ds") == files_of(r.path)
    assert set(hub.dataset_files("me/ds")) == {"README.md", DATA_FILE, "curate_provenance.json"}
    assert hub.repos[("dataset", "me/ds")]["private"] is True
    assert {hub.auth_headers[i] for i in writes(hub)} == {f"Bearer {TOKEN}"}
    card = (r.path / "README.md").read_text()
    assert 'load_dataset("me/ds")' in card and "hf://datasets/me/ds/data/*.parquet" in card


def test_cli_hub_push_alone_writes_no_local_copy_and_never_shows_the_token(ews, hub, monkeypatch, cli, tmp_path):
    with_token(monkeypatch)

    r = cli("export", SPLIT_EVEN, "-w", ews.root, "--hub", "me/ds", "--private")

    assert r.exit_code == 0, r.output
    assert r.stdout == f"{hub.url}/datasets/me/ds\n"
    assert f"pushing {SPLIT_EVEN} (6 rows) to the Hub dataset repo me/ds (private)..." in r.stderr
    assert not Path("datasets_out").exists()
    files = hub.dataset_files("me/ds")
    assert set(files) == {"README.md", DATA_FILE, "curate_provenance.json"}
    assert pl.read_parquet(io.BytesIO(files[DATA_FILE]))["rank"].to_list() == [1, 2, 3, 4, 5, 6]
    assert hub.repos[("dataset", "me/ds")]["private"] is True
    assert {hub.auth_headers[i] for i in writes(hub)} == {f"Bearer {TOKEN}"}
    assert TOKEN not in r.output
    assert all(TOKEN.encode() not in data for data in files.values())
    assert all(TOKEN.encode() not in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


def test_cli_hub_push_with_to_exports_locally_and_pushes_the_same_bytes(ews, hub, monkeypatch, cli):
    with_token(monkeypatch)

    r = cli("export", SPLIT_EVEN, "-w", ews.root, "--hub", "me/ds", "--output", "local/ds", "-q")

    assert r.exit_code == 0, r.output
    assert (r.stdout, r.stderr) == (f"local/ds\n{hub.url}/datasets/me/ds\n", "")
    assert hub.dataset_files("me/ds") == files_of(Path("local/ds"))
    assert hub.repos[("dataset", "me/ds")]["private"] is False
    assert hub.repos[("dataset", "me/ds")]["commits"][-1]["summary"].startswith(f"curate export {SPLIT_EVEN} (")


def test_hub_errors_are_clear(ews, hub, monkeypatch, cli):
    folder = export_subset(ews, SPLIT_EVEN).path
    # no token at all: the Hub answers 401
    with pytest.raises(CurateError) as e:
        push_to_hub(folder, "me/ds")
    assert str(e.value) == ("The Hub refused the push to 'me/ds' (401 Unauthorized): no token was found. Set HF_TOKEN "
                            "to a token with write access (https://huggingface.co/settings/tokens) or run `hf auth "
                            "login`, then try again.")
    assert hub.repos == {}
    r = cli("export", SPLIT_EVEN, "-w", ews.root, "--hub", "me/ds", "-q")
    assert r.exit_code == 1 and r.stderr == f"Error: {e.value}\n" and r.stdout == ""

    with_token(monkeypatch)
    with pytest.raises(CurateError, match=r"^'bad name!' is not a valid Hub repo id \(.*\). Use NAMESPACE/NAME"):
        push_to_hub(folder, "bad name!")

    # the Hub is unreachable: a port nothing listens on
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(CurateError, match=rf"^Could not reach the Hugging Face Hub at http://127.0.0.1:{port} \(.*\)"
                                          r"\. Check the network, or HF_ENDPOINT .* export locally with --output PATH"):
        push_to_hub(folder, "me/ds")

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if the hub extra were not installed
    with pytest.raises(CurateError, match=r"^--hub needs huggingface_hub: pip install 'curate\[hub\]'\.$"):
        push_to_hub(folder, "me/ds")


def test_a_rejected_token_says_so_without_showing_it(ews, monkeypatch, tmp_path, cli):
    with HubServer(valid_tokens={"hf_the_right_one"}) as server:
        point_hf_client_at(server, monkeypatch, tmp_path / "hf_home")
        with_token(monkeypatch)
        r = cli("export", SPLIT_EVEN, "-w", ews.root, "--hub", "me/ds")
    assert r.exit_code == 1
    assert "(401 Unauthorized): the token was not accepted. Set HF_TOKEN" in r.stderr
    assert TOKEN not in r.output and server.repos == {}


def test_a_subset_whose_pairs_are_not_in_this_workspace(ews):
    """subset_pairs copied from another workspace name pairs this one lacks: a clear error, for export and
    for training alike, never fewer rows without a word."""
    from curate.train.data import load_preferences

    sid = query(ews.root, "select subset_id from subsets where name = $n", {"n": SPLIT_EVEN})[0][0]
    with ews.transaction() as tx:
        tx.add("subset_pairs", pl.DataFrame({"subset_id": [sid], "pair_id": ["0" * 32], "rank": [7], "score": [0.5],
                                             "picked_by": ["pos"], "reason": [None], "flipped": [False]}))
    message = "lists 7 rows but only 6 of its pairs are in `pairs`"
    with pytest.raises(CurateError, match=message):
        export_subset(ews, SPLIT_EVEN)
    with pytest.raises(CurateError, match=message):
        load_preferences(ews.root, subset=SPLIT_EVEN)
