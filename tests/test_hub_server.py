"""The loopback Hub (tests/hub_server.py) driven by the real huggingface_hub client, and curate's Hub model path.

Nothing here reaches the network: every request goes to a HubServer on 127.0.0.1, and every cache lives under
pytest's tmp_path.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

from curate.embedding.model import load_encoder, resolve
from curate.errors import CurateError

from .hub_server import HubServer, git_blob_oid, point_hf_client_at

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_test_token"


@pytest.fixture
def hub_server():
    with HubServer() as server:
        yield server


@pytest.fixture
def hf_home(tmp_path, monkeypatch, hub_server) -> Path:
    """huggingface_hub pointed at hub_server (env and constants), its caches and hf_xet's logs under tmp_path."""
    home = tmp_path / "hf_home"
    point_hf_client_at(hub_server, monkeypatch, home)
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "curate_cache"))
    return home


def folder_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def write_files(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A real sentence-transformers model (BERT, 1 layer, hidden 32, WordPiece vocab of 120 trained here) + mean pooling."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors, trainers
    from tokenizers import models as tok_models
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    sentences = ["hello world", "the quick brown fox jumps over the lazy dog", "preference data curation for rlhf",
                 "chosen and rejected answers", "a helpful and harmless assistant"]
    tok = Tokenizer(tok_models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(sentences, trainers.WordPieceTrainer(
        vocab_size=120, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                     sep_token="[SEP]", mask_token="[MASK]")
    root = tmp_path_factory.mktemp("tiny_embedder")
    bert_dir = root / "bert"
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(bert_dir)
    hf_tok.save_pretrained(bert_dir)
    model = SentenceTransformer(modules=[Transformer(str(bert_dir), max_seq_length=32), Pooling(32, pooling_mode="mean")],
                                device="cpu")
    model.save(str(root / "st"))
    return root / "st"


# ---------------------------------------------------------------------------------------------- downloads


def test_snapshot_download_round_trips_a_folder_byte_for_byte(hub_server, hf_home, tmp_path):
    files = {
        "config.json": b'{"hidden_size": 32}\n',
        "modules.json": b"[]\n",
        "1_Pooling/config.json": b'{"pooling_mode": "mean"}\n',
        "model.safetensors": os.urandom(3000) + b"\x00\xff",  # served LFS-style: sha256 etag
        "README.md": "caf\u00e9 \u2603\n".encode(),
    }
    sha = hub_server.add_model("acme/tiny-embedder", write_files(tmp_path / "src", files))
    assert re.fullmatch(r"[0-9a-f]{40}", sha)
    assert hub_server.add_model("acme/tiny-embedder", tmp_path / "src") == sha  # stable across registrations
    cache = tmp_path / "cache"

    path = Path(snapshot_download("acme/tiny-embedder", endpoint=hub_server.url, cache_dir=cache))

    assert path == cache / "models--acme--tiny-embedder" / "snapshots" / sha
    assert folder_files(path) == files
    assert (cache / "models--acme--tiny-embedder" / "refs" / "main").read_text() == sha
    blobs = {p.name for p in (cache / "models--acme--tiny-embedder" / "blobs").iterdir()}
    assert blobs == {hashlib.sha256(files["model.safetensors"]).hexdigest()} | {
        git_blob_oid(data) for name, data in files.items() if name != "model.safetensors"}
    gets = [p for m, p in hub_server.requests if m == "GET" and "/resolve/" in p]
    assert sorted(p.split(f"/resolve/{sha}/")[1] for p in gets) == sorted(files)
    assert ("GET", "/api/models/acme/tiny-embedder/revision/main") in hub_server.requests

    # A second call finds the snapshot in the cache: one repo_info call, no file transfer.
    before = len(hub_server.requests)
    assert Path(snapshot_download("acme/tiny-embedder", endpoint=hub_server.url, cache_dir=cache)) == path
    assert [p for _, p in hub_server.requests[before:] if "/resolve/" in p] == []


def test_resolve_answers_with_hub_headers_and_ranges(hub_server, hf_home, tmp_path):
    data = bytes(range(256)) * 4
    sha = hub_server.add_model("acme/ranges", write_files(tmp_path / "src", {"w.bin": data, "a.txt": b"abc"}))
    base = f"{hub_server.url}/acme/ranges/resolve/main"

    head = urllib.request.urlopen(urllib.request.Request(f"{base}/w.bin", method="HEAD"))
    assert head.headers["X-Repo-Commit"] == sha
    assert head.headers["X-Linked-Etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert head.headers["X-Linked-Size"] == head.headers["Content-Length"] == str(len(data))
    assert urllib.request.urlopen(f"{base}/a.txt").headers["ETag"] == f'"{git_blob_oid(b"abc")}"'

    part = urllib.request.urlopen(urllib.request.Request(f"{base}/w.bin", headers={"Range": "bytes=10-19"}))
    assert (part.status, part.read(), part.headers["Content-Range"]) == (206, data[10:20], f"bytes 10-19/{len(data)}")
    tail = urllib.request.urlopen(urllib.request.Request(f"{base}/w.bin", headers={"Range": "bytes=1000-"}))
    assert tail.read() == data[1000:]

    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{base}/missing.txt")
    assert (e.value.code, e.value.headers["X-Error-Code"], e.value.headers["X-Repo-Commit"]) == (404, "EntryNotFound", sha)


def test_unknown_repo_and_revision_raise_the_hub_errors(hub_server, hf_home, tmp_path):
    hub_server.add_model("acme/known", write_files(tmp_path / "src", {"config.json": b"{}"}))
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("acme/does-not-exist", endpoint=hub_server.url, cache_dir=tmp_path / "cache")
    with pytest.raises(RevisionNotFoundError):
        snapshot_download("acme/known", revision="v9", endpoint=hub_server.url, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "models--acme--does-not-exist" / "snapshots").exists()


# ---------------------------------------------------------------------------------------------- pushes


def test_create_repo_and_upload_folder_round_trip(hub_server, hf_home, tmp_path):
    files = {
        "README.md": b"---\nlicense: mit\n---\n# Curated pairs\n",
        "data/train-00000-of-00001.jsonl": '{"prompt": "caf\u00e9?", "chosen": "oui"}\n'.encode(),
        "data/nested/vectors.bin": os.urandom(2048),
        "empty.txt": b"",
    }
    folder = write_files(tmp_path / "push", files)
    api = HfApi(endpoint=hub_server.url, token=TOKEN)

    url = api.create_repo("me/ds", repo_type="dataset", private=True, exist_ok=True)
    info = api.upload_folder(folder_path=folder, repo_id="me/ds", repo_type="dataset", commit_message="Push pairs")

    assert (url.repo_id, url.repo_type, url) == ("me/ds", "dataset", f"{hub_server.url}/datasets/me/ds")
    assert hub_server.dataset_files("me/ds") == files
    repo = hub_server.repos[("dataset", "me/ds")]
    assert repo["private"] is True and repo["files"] == files
    assert info.oid == repo["sha"] and info.commit_url == f"{hub_server.url}/datasets/me/ds/commit/{repo['sha']}"
    assert repo["commits"][-1]["summary"] == "Push pairs"
    writes = [i for i, (m, p) in enumerate(hub_server.requests)
              if p in ("/api/repos/create", "/api/datasets/me/ds/preupload/main", "/api/datasets/me/ds/commit/main")]
    assert len(writes) == 3  # the content went inline in the commit: no LFS or Xet transfer
    assert {hub_server.auth_headers[i] for i in writes} == {f"Bearer {TOKEN}"}

    # exist_ok keeps the repo; an unchanged folder makes no commit; a changed file makes one.
    api.create_repo("me/ds", repo_type="dataset", private=True, exist_ok=True)
    assert api.upload_folder(folder_path=folder, repo_id="me/ds", repo_type="dataset").oid == info.oid
    (folder / "empty.txt").write_bytes(b"now filled\n")
    second = api.upload_folder(folder_path=folder, repo_id="me/ds", repo_type="dataset")
    assert second.oid != info.oid and hub_server.dataset_files("me/ds")["empty.txt"] == b"now filled\n"
    assert len(repo["commits"]) == 3  # creation, first push, second push

    # What was pushed downloads back, with the token only: the repo is private.
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("me/ds", repo_type="dataset", endpoint=hub_server.url, token=False,
                          cache_dir=tmp_path / "dl")
    path = snapshot_download("me/ds", repo_type="dataset", endpoint=hub_server.url, token=TOKEN,
                             cache_dir=tmp_path / "dl")
    assert folder_files(Path(path)) == hub_server.dataset_files("me/ds")


def test_writes_need_a_token(hub_server, hf_home):
    with pytest.raises(HfHubHTTPError) as e:
        HfApi(endpoint=hub_server.url, token=False).create_repo("me/ds", repo_type="dataset")
    assert e.value.response.status_code == 401
    assert hub_server.repos == {}


# ---------------------------------------------------------------------------------------------- curate


def test_curate_resolves_and_encodes_a_hub_model(hub_server, hf_home, tiny_model_dir):
    sha = hub_server.add_model("acme/tiny-embedder", tiny_model_dir)

    ref = resolve("acme/tiny-embedder")

    assert (ref.name, ref.source, ref.revision, ref.dim) == ("acme/tiny-embedder", "hub", sha, 32)
    assert ref.folder == hf_home / "hub" / "models--acme--tiny-embedder" / "snapshots" / sha
    assert folder_files(ref.folder) == folder_files(tiny_model_dir)
    local = resolve(str(tiny_model_dir))
    assert ref.identity["weights_sha256"] == local.identity["weights_sha256"]
    assert ref.model_id != local.model_id  # the name and revision are part of the identity

    vecs = load_encoder(ref, "torch", "cpu").encode(["hello", "world"], batch_size=2)

    assert vecs.shape == (2, 32) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(vecs[0], vecs[1])
    np.testing.assert_allclose(vecs, load_encoder(local, "torch", "cpu").encode(["hello", "world"]), atol=1e-6)
    assert (Path(os.environ["CURATE_CACHE"]) / "fingerprints.json").is_file()


def test_curate_unknown_hub_model_is_a_curate_error(hub_server, hf_home):
    with pytest.raises(CurateError, match="RepositoryNotFoundError"):
        resolve("acme/not-there")


def test_hf_endpoint_in_the_environment_reaches_a_new_process(hub_server, hf_home, tiny_model_dir):
    """A process that starts with HF_ENDPOINT set (a CLI run) needs nothing else: huggingface_hub reads it at import."""
    sha = hub_server.add_model("acme/tiny-embedder", tiny_model_dir)
    code = ("import json; from curate.embedding.model import resolve; r = resolve('acme/tiny-embedder'); "
            "print(json.dumps([r.source, r.revision, r.dim, str(r.folder)]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=dict(os.environ), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    source, revision, dim, folder = json.loads(out.stdout.strip().splitlines()[-1])
    assert (source, revision, dim) == ("hub", sha, 32)
    assert Path(folder).is_relative_to(hf_home)
