"""A judge that asks any OpenAI-compatible chat endpoint (vLLM, SGLang, llama.cpp's server, OpenAI, Gemini's
OpenAI-compatible endpoint) which answer is better, through the `openai` client.

    judge = OpenAIJudge("Qwen/Qwen2.5-7B-Instruct", base_url="http://localhost:8000/v1")
    judge.judge(requests, on_answer)

Every request is one chat message (the rendered prompt) at temperature 0; the reply's text is parsed with
parse_verdict, and a reply that names neither A nor B is asked once more. Transient failures (timeouts, refused
connections, 408/409/429, 5xx) are retried by the client itself, with exponential backoff that honours
Retry-After; what a retry cannot fix becomes a CurateError that names the endpoint and the fix. The API key is
read from the environment and never appears in judge_id, identity or any message.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from urllib.parse import urlsplit, urlunsplit

from curate.errors import CurateError
from curate.judge.base import Answer, Request, identity_hash, parse_verdict

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MESSAGE_CHARS = 300  # of a server's error message quoted in ours


def _public_url(url: str) -> str:
    """The URL without userinfo, query or fragment (they may hold credentials), and without a trailing slash."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path.rstrip("/"), "", ""))


class OpenAIJudge:
    """Judge through POST {base_url}/chat/completions, `concurrency` requests in flight. A ready `client`
    (openai.OpenAI or alike) is used as it is: then no key is read from the environment."""

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 8, timeout: float = 60.0, max_retries: int = 5, max_tokens: int = 8,
                 client=None):
        if concurrency < 1:
            raise CurateError(f"The judge's concurrency must be at least 1, not {concurrency}.")
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_tokens = max_tokens
        if base_url is None:
            # explicit rather than the client's default, which OPENAI_BASE_URL could change behind judge_id's back
            base_url = str(getattr(client, "base_url", DEFAULT_BASE_URL))
        self.base_url = _public_url(base_url)
        if client is None:
            key = os.environ.get(api_key_env, "")
            if not key:
                raise CurateError(
                    f"Set {api_key_env} (the judge's API key) in the environment, or name another variable with "
                    f"--api-key-env. A local server that needs no key accepts any value: export {api_key_env}=EMPTY."
                )
            import openai

            client = openai.OpenAI(base_url=base_url, api_key=key, timeout=timeout, max_retries=max_retries)
        self.client = client
        self.identity = {"kind": "openai", "model": model, "base_url": self.base_url, "max_tokens": max_tokens,
                         "temperature": 0}
        self.judge_id = f"openai:{model}@{urlsplit(self.base_url).netloc}#{identity_hash(self.identity)}"

    def check(self) -> None:
        """Ask the endpoint for its models before any work: an unreachable server, a refused key or an unknown
        model fails here, not after the policies have answered every prompt. A server without GET /models (or
        that lists none) is let through: the first judgment will say what is wrong."""
        import openai

        try:
            names = [m.id for m in self.client.models.list()]
        except (openai.APIConnectionError, openai.AuthenticationError) as e:
            raise self._error(e) from None
        except openai.OpenAIError:
            return
        if names and self.model not in names:
            shown = ", ".join(sorted(names)[:10]) + (" ..." if len(names) > 10 else "")
            raise CurateError(f"the judge endpoint {self.base_url} has no model {self.model!r} (it lists {shown}): "
                              "check the model name")

    def __repr__(self) -> str:
        return f"OpenAIJudge({self.judge_id!r})"

    def judge(self, requests: list[Request], on_answer: Callable[[int, Answer], None]) -> None:
        """Judge every request; on_answer(i, answer) is called from this thread as each verdict arrives."""
        if not requests:
            return
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests)), thread_name_prefix="openai-judge")
        failed = threading.Event()
        futures: dict[Future, int] = {pool.submit(self._task, r, failed): i for i, r in enumerate(requests)}
        pending = dict(futures)
        error: BaseException | None = None
        try:
            for future in as_completed(futures):
                error = future.exception()
                if error is not None:
                    break
                del pending[future]
                if future.result() is not None:
                    on_answer(futures[future], future.result())
        except BaseException:  # KeyboardInterrupt, or on_answer failing: nothing more is asked
            failed.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True, cancel_futures=True)
        if error is None:
            return
        # verdicts of requests that were in flight when the error came were paid for: keep them too
        for future, i in pending.items():
            if not future.cancelled() and future.exception() is None and future.result() is not None:
                on_answer(i, future.result())
        raise error

    def _task(self, request: Request, failed: threading.Event) -> Answer | None:
        """_ask, unless a request has already failed: a worker that frees up must not start another (None)."""
        if failed.is_set():
            return None
        try:
            return self._ask(request)
        except BaseException:
            failed.set()
            raise

    def _ask(self, request: Request) -> Answer:
        raw = self._complete(request.text)
        verdict = parse_verdict(raw)
        if verdict != "invalid":
            return Answer(raw=raw, verdict=verdict)
        raw = self._complete(request.text)
        return Answer(raw=raw, verdict=parse_verdict(raw), attempts=2)

    def _complete(self, text: str) -> str:
        import openai

        try:
            response = self.client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": text}], temperature=0,
                max_tokens=self.max_tokens)
        except openai.OpenAIError as e:
            # from None: the client's exception (and its request, with the key in a header) stays out of tracebacks
            raise self._error(e) from None
        if isinstance(response, (str, bytes)) or not hasattr(response, "choices"):  # an HTML page, say
            raise self._not_chat(str(response))
        choices = response.choices or []
        return (choices[0].message.content if choices else None) or ""

    def _not_chat(self, text: str) -> CurateError:
        return CurateError(f"the judge endpoint {self.base_url} gave an answer that is not a chat completion "
                           f"(check --base-url: it usually ends in /v1): {self._quote(text)}")

    def _error(self, e: Exception) -> CurateError:
        """What a retry cannot fix, in words that name the endpoint (never the key) and the fix."""
        import openai

        url, model, n = self.base_url, self.model, self.max_retries
        tries = f"after {n} {'retry' if n == 1 else 'retries'}"
        if isinstance(e, openai.APITimeoutError):
            return CurateError(f"cannot reach the judge endpoint {url}: no answer within {self.timeout:g} s, {tries}; "
                               "check --base-url and that the server is running (a slow one may need a longer timeout)")
        if isinstance(e, openai.APIConnectionError):
            return CurateError(f"cannot reach the judge endpoint {url}: connection failed {tries}; "
                               "check --base-url and that the server is running")
        if isinstance(e, openai.AuthenticationError):
            # the server's own message is left out: OpenAI's quotes part of the key
            return CurateError(f"the judge endpoint {url} refused the API key in ${self.api_key_env} (401): "
                               f"check the key, or name the variable that holds it with --api-key-env")
        if isinstance(e, openai.NotFoundError):
            return CurateError(f"the judge endpoint {url} has no model {model!r} (404): check the model name; "
                               f"list models with GET {url}/models (and check --base-url: it usually ends in /v1)")
        if not isinstance(e, openai.APIStatusError):
            return self._not_chat(str(e))
        status, message = e.status_code, self._quote(self._server_message(e))
        if isinstance(e, openai.RateLimitError):
            return CurateError(f"the judge endpoint {url} is still failing (429, rate limit) {tries}: lower the judge's "
                               f"concurrency or try again later ({message})")
        if isinstance(e, openai.InternalServerError):
            return CurateError(f"the judge endpoint {url} is still failing ({status}) {tries}: {message}")
        if isinstance(e, openai.BadRequestError):
            return CurateError(f"the judge endpoint {url} rejected the request for model {model!r} (400): {message}")
        return CurateError(f"the judge endpoint {url} answered {status} for model {model!r}: {message}")

    @staticmethod
    def _server_message(e) -> str:
        body = e.body
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
        return str(body) if body else e.message

    def _quote(self, text: str) -> str:
        key = getattr(self.client, "api_key", None)
        if isinstance(key, str) and key:  # a server may echo it
            text = text.replace(key, "***")
        text = " ".join(text.split())
        return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 3] + "..."
