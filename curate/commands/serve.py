"""`curate serve`: vLLM's OpenAI-compatible server on a policy, for generation and for a judge, until Ctrl-C."""

from __future__ import annotations

import click

from .options import json_option, quiet_option


@click.command()
@click.option("--model", "-m", default="smollm2-135m", show_default=True,
              help="The model to serve: a folder, a Hub id, or smollm2-135m (offline default).")
@click.option("--revision", default=None, help="Hub revision of --model.")
@click.option("--vllm-python", default="", help="The python that has vLLM (default: $CURATE_VLLM_PYTHON, else this "
              "one if it has vLLM; `make vllm-env` builds .venv-vllm).")
@click.option("--dtype", default="auto", show_default=True,
              help="auto (bfloat16 on GPUs and CPUs with bfloat16 instructions, else float32), float32, bfloat16.")
@click.option("--seed", type=int, default=0, show_default=True, help="The server's seed (requests bring their own).")
@click.option("--port", type=int, default=0, help="Loopback port (default: a free one).")
@click.option("--vllm-args", default="", help="Extra arguments for vLLM's server, e.g. \"--max-num-seqs 64\".")
@click.option("--workspace", "-w", default=None, type=click.Path(file_okay=False),
              help="Accepted like every command's; a server reads and writes no workspace.")
@json_option
@quiet_option
def serve(model, revision, vllm_python, dtype, seed, port, vllm_args, workspace, as_json, quiet):
    """Serve a model with vLLM on a loopback port until Ctrl-C.

    The server is the one `curate generate --backend vllm` starts for a step, kept running: give its
    URL to several steps (--vllm-url) and to the judge of `curate eval winrate` (--base-url). It is
    served under its curate model id, which it prints.

    \b
    Examples:
      CURATE_VLLM_PYTHON=.venv-vllm/bin/python curate serve --model smollm2-135m
      curate generate --iteration 1 --backend vllm --vllm-url http://127.0.0.1:PORT/v1
      OPENAI_API_KEY=EMPTY curate eval winrate --a A --b B --judge openai:MODEL_ID --base-url URL
    """
    import time

    from ..models import resolve_policy
    from ..vllm_server import VllmServer

    ref = resolve_policy(model, revision)
    say = (lambda text: None) if quiet else (lambda text: click.echo(text, err=True))
    with VllmServer.start(ref.folder, ref.model_id, seed=seed, python=vllm_python or None, dtype=dtype,
                          extra_args=vllm_args, status=say, port=port) as server:
        if as_json:
            import json

            click.echo(json.dumps({"base_url": server.base_url, "model": ref.model_id, "folder": str(ref.folder),
                                   **server.info}), nl=True)
        else:
            click.echo(f"{server.base_url}  serving {ref.model_id} ({ref.folder}); Ctrl-C stops it")
        say(f"  vLLM {server.info.get('vllm')} on {server.info['device']} ({server.info['dtype']}), ready in "
            f"{server.info['start_seconds']} s; log: {server.log}")
        try:
            while server.process is not None and server.process.poll() is None:
                time.sleep(1.0)
        except KeyboardInterrupt:
            say("stopping vLLM")
            return
        raise click.ClickException(f"the vLLM server stopped by itself; the end of its log:\n{server.log_tail()}")
