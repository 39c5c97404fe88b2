"""Raw vLLM, the baseline of curate's vLLM backend: the offline `LLM` class on the same token ids, in vLLM's own
environment (it has no curate: the prompts come as a JSON file of token ids).

    .venv-vllm/bin/python benchmarks/vllm_raw.py MODEL_FOLDER IDS.json MAX_NEW_TOKENS DTYPE EAGER(0|1)

Prints one JSON line: prompts, new tokens, seconds inside `generate`, seconds to start.
"""

import json
import sys
import time


def main() -> None:
    folder, ids_file, max_new, dtype, eager = sys.argv[1:6]
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    ids = json.load(open(ids_file))
    t0 = time.perf_counter()
    # the engine-level seed: a per-request seed fails on the CPU build when a prompt is prefilled in chunks
    llm = LLM(model=folder, dtype=dtype, seed=0, enforce_eager=eager == "1", generation_config="vllm")
    start = time.perf_counter() - t0
    sp = SamplingParams(max_tokens=int(max_new), top_k=50, temperature=1.0, stop=["\n\nHuman:"])
    t1 = time.perf_counter()
    outs = llm.generate([TokensPrompt(prompt_token_ids=x) for x in ids], sp, use_tqdm=False)
    seconds = time.perf_counter() - t1
    tokens = sum(len(c.token_ids) for o in outs for c in o.outputs)
    print(json.dumps({"prompts": len(ids), "new_tokens": tokens, "generate_seconds": seconds, "start_seconds": start}))


if __name__ == "__main__":  # vLLM's engine starts worker processes by spawn: they import this file again
    main()
