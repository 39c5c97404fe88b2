"""Fixtures: real files in tmp dirs, a real workspace on disk, the CLI through click's CliRunner."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.workspace import Workspace

# The CI clones the repository with ../shared beside it (shared/data/hh-rlhf/...).
SHARED_HH = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"

H, A = "\n\nHuman: ", "\n\nAssistant: "


def transcript(*turns: str) -> str:
    """HH-RLHF transcript from alternating human/assistant turns: transcript("hi", "hello")."""
    return "".join((H if i % 2 == 0 else A) + t for i, t in enumerate(turns))


def tiny_lm(folder: Path, seed: int = 0, window: int = 64, chat_template: str | None = None):
    """(folder, model, tokenizer): a 1-layer Llama with a `window`-token context and a byte-level BPE tokenizer
    trained on a few HH transcripts, saved to folder; seed sets its weights."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = [transcript(f"how do I bake bread number {i}?", "Mix flour, water and yeast, then bake it.",
                         "thanks", "You're welcome.") for i in range(50)]
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>", "<pad>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", pad_token="<pad>", padding_side="left")
    if chat_template:
        tok.chat_template = chat_template
    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, vocab_size=len(tok), max_position_embeddings=window,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    model = LlamaForCausalLM(cfg).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder, model, tok


def hh_row(prompt: str, chosen: str, rejected: str) -> dict:
    """One HH-RLHF row whose chosen and rejected share the single human turn `prompt`."""
    return {"chosen": transcript(prompt, chosen), "rejected": transcript(prompt, rejected)}


def write_jsonl(path: Path, rows: list) -> Path:
    """Rows as JSON lines; a str row is written verbatim (for invalid JSON and blank lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def query(ws_root: Path, sql: str, params: dict | None = None) -> list[tuple]:
    """Rows of a read-only query over the workspace's views (what a user's SQL would see)."""
    con = Workspace(ws_root).connect()
    try:
        return con.execute(sql, params or {}).fetchall()
    finally:
        con.close()


def scalar(ws_root: Path, sql: str, params: dict | None = None):
    return query(ws_root, sql, params)[0][0]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def cli(runner):
    """cli(*args) runs `curate args...`; exceptions that are not user errors propagate (a bug shows as one)."""

    def invoke(*args, input=None, env=None):
        return runner.invoke(main, [str(a) for a in args], input=input, env=env, catch_exceptions=False,
                             prog_name="curate")

    return invoke


@pytest.fixture
def ws(tmp_path) -> Path:
    """Path of a workspace that does not exist yet (ingest creates it)."""
    return tmp_path / "ws"


@pytest.fixture
def hh_rows() -> list[dict]:
    return [hh_row(f"question {i}?", f"good answer {i}", f"bad answer {i}") for i in range(6)]


@pytest.fixture
def hh_file(tmp_path, hh_rows) -> Path:
    """Six HH rows laid out like HH-RLHF: <subset>/<split>.jsonl."""
    return write_jsonl(tmp_path / "data" / "helpful-base" / "train.jsonl", hh_rows)


@pytest.fixture
def filled_ws(cli, ws, hh_file) -> Path:
    """A workspace holding the six pairs of hh_file."""
    r = cli("ingest", hh_file, "-w", ws, "-q")
    assert r.exit_code == 0, r.output
    return ws


@pytest.fixture(scope="session")
def shared_hh() -> Path:
    if not SHARED_HH.is_file():
        pytest.skip(f"the shared HH-RLHF file is not at {SHARED_HH} (clone the repo with ../shared beside it)")
    return SHARED_HH


@pytest.fixture(scope="session")
def real_ws(tmp_path_factory, shared_hh) -> Path:
    """The shared harmless-base test file ingested once (sft fraction 0.5, seed 0); tests only read it."""
    from curate.ingest import ingest

    root = tmp_path_factory.mktemp("real") / "ws"
    ingest(Workspace(root), [str(shared_hh)], sft_fraction=0.5, seed=0)
    return root


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One CURATE_CACHE for the tests of the packaged default policy, so its GGUF is converted once per session."""
    return tmp_path_factory.mktemp("policy_cache")


@pytest.fixture(scope="session", autouse=True)
def _no_home_cache(tmp_path_factory):
    """No test writes to ~/.cache/curate: fingerprints, ONNX exports and policies go to a session tmp dir
    (modules that need their own set CURATE_CACHE again)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CURATE_CACHE", str(tmp_path_factory.mktemp("curate-cache")))
    # --backend auto would start a vLLM server for every generation; tests/test_vllm.py names its python itself
    mp.delenv("CURATE_VLLM_PYTHON", raising=False)
    yield
    mp.undo()


# (pos_sim, neg_sim) per pair for filter/export tests; dyadic values so sums are exact, and two scores sit
# exactly on the floor 1 - 0.2 = 0.8 (not above it).
HAND_SIMS = {
    "p0": (0.9375, 0.75),
    "p1": (0.90625, 0.90625),
    "p2": (0.875, 0.875),
    "p3": (0.8, 0.9375),
    "p4": (0.75, 0.875),
    "p5": (0.875, 0.5),
    "p6": (0.875, 0.8125),
    "p7": (0.5, 0.5),
    "p8": (0.8125, 1.0),
    "p9": (0.96875, 0.8),
}


def hand_scored_ws(cli, tmp_path: Path) -> Workspace:
    """Ten pref pairs p0..p9 scored by hand in iteration 1 (model m-1, one sample each), p7 alone in
    iteration 2; p7 has a second, much closer sample that only --aggregate max sees (pos_sim_max 0.99).
    The workspace gets .ids (name -> pair_id), .name_of (pair_id -> name) and .src (the ingested file)."""
    import polars as pl

    src = write_jsonl(tmp_path / "data" / "harmless-base" / "train.jsonl",
                      [hh_row(f"question {i}?", f"good {i}", f"bad {i}") for i in range(10)])
    root = tmp_path / "ws"
    assert cli("ingest", src, "-w", root, "-q").exit_code == 0
    ws = Workspace(root)
    ids = dict(query(root, "select 'p' || (source_row::varchar), pair_id from pairs"))
    pos, neg = [v[0] for v in HAND_SIMS.values()], [v[1] for v in HAND_SIMS.values()]
    sims = pl.DataFrame({
        "branch": "main", "iteration": 1, "pair_id": [ids[k] for k in HAND_SIMS], "model_id": "m-1",
        "pos_sim": pos, "neg_sim": neg, "pos_sim_max": pos, "neg_sim_max": neg, "n_samples": 1,
    })
    p7 = pl.col("pair_id") == ids["p7"]
    sims = sims.with_columns(pos_sim_max=pl.when(p7).then(0.99).otherwise("pos_sim_max"),
                             n_samples=pl.when(p7).then(2).otherwise("n_samples"))
    with ws.transaction() as tx:
        tx.add("similarities", sims, key="main-it1-m-1")
        tx.add("similarities", sims.filter(p7).with_columns(iteration=pl.lit(2)), key="main-it2-m-1")
    ws.ids = ids
    ws.name_of = {v: k for k, v in ids.items()}
    ws.src = src
    return ws


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny models: threads spinning against a busy CPU made such files 10x slower.
    Use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
