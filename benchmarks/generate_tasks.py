"""The sides of the generation benchmark, each run in its own process by _measure.py."""

from __future__ import annotations

import time


def naive(workspace: str, n: str, max_new_tokens: str) -> dict:
    """What a user would write: model.generate one prompt at a time, chat template, top-k 50."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from curate.generate import hh_messages
    from curate.models import resolve_policy
    from curate.workspace import Workspace

    con = Workspace(workspace).connect()
    prompts = [r[0] for r in con.execute("select distinct prompt from pairs where source_row < $n and role = 'pref' "
                                         "order by prompt", {"n": int(n)}).fetchall()]
    con.close()
    folder = resolve_policy("smollm2-135m").folder
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    torch.manual_seed(0)
    tokens, t0 = 0, time.perf_counter()
    for p in prompts:
        ids = tok.apply_chat_template(hh_messages(p), add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True)
        out = model.generate(**ids, do_sample=True, top_k=50, max_new_tokens=int(max_new_tokens),
                             pad_token_id=tok.eos_token_id)
        new = out[0, ids["input_ids"].shape[1]:].tolist()
        tokens += next((i for i, t in enumerate(new) if t == tok.eos_token_id), len(new))
    return {"prompts": len(prompts), "new_tokens": tokens, "generate_seconds": time.perf_counter() - t0}


def curate_generate(workspace: str, n: str, max_new_tokens: str, batch_size: str, iteration: str,
                    backend: str = "transformers", vllm_python: str = "") -> dict:
    """`curate generate` through its Python API (the CLI calls the same function)."""
    from curate.generate import GenerateParams, generate
    from curate.workspace import Workspace

    r = generate(Workspace(workspace), "smollm2-135m", iteration=int(iteration), where=f"source_row < {int(n)}",
                 params=GenerateParams(max_new_tokens=int(max_new_tokens), chat_template=True),
                 batch_size=int(batch_size), backend=backend, vllm_python=vllm_python or None)
    m = Workspace(workspace).manifests("generate")[-1]
    return {"prompts": r.generated_prompts, "new_tokens": r.new_tokens, "generate_seconds": r.generate_seconds,
            "truncated": r.truncated, "start_seconds": (m.get("server") or {}).get("start_seconds"),
            "dtype": m["dtype"], "server_args": (m.get("server") or {}).get("args")}


def prompt_ids(workspace: str, n: str, out: str) -> dict:
    """The token ids curate sends for the first n rows' prompts (chat template), for raw vLLM to get the same."""
    import json

    from transformers import AutoTokenizer

    from curate.generate import select_prompts, tokenize_prompts
    from curate.models import resolve_policy
    from curate.workspace import Workspace

    folder = resolve_policy("smollm2-135m").folder
    prompts = select_prompts(Workspace(workspace), f"source_row < {int(n)}", None, None, 0)
    tokenize_prompts(prompts, AutoTokenizer.from_pretrained(folder), True, None)
    with open(out, "w") as fh:
        json.dump([p.ids for p in prompts], fh)
    return {"prompts": len(prompts), "folder": str(folder)}
