"""OpenAIJudge against a loopback OpenAI-compatible server (tests/openai_server.py): what it sends, how it parses,
retries and fails, and that the API key never leaks."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import pytest

from curate.errors import CurateError
from curate.judge.base import Answer, Request, identity_hash
from curate.judge.openai_judge import OpenAIJudge

from .openai_server import OpenAIServer, ServerError

KEY = "sk-test-S3CRET-key-0123456789"
MODEL = "judge"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture
def server():
    with OpenAIServer(api_key=KEY, models=(MODEL,)) as s:
        yield s


def requests_(n: int) -> list[Request]:
    return [Request(text=f"prompt {i}", question=f"q{i}", answer_a=f"a{i}", answer_b=f"b{i}") for i in range(n)]


def run(judge: OpenAIJudge, requests: list[Request]) -> dict[int, Answer]:
    got: dict[int, Answer] = {}

    def on_answer(i: int, answer: Answer) -> None:
        assert i not in got
        got[i] = answer

    judge.judge(requests, on_answer)
    return got


def make(server: OpenAIServer, **kw) -> OpenAIJudge:
    return OpenAIJudge(kw.pop("model", MODEL), base_url=server.base_url, **kw)


def assert_no_key(*texts) -> None:
    for text in texts:
        assert KEY not in str(text)


def test_verdicts_parsed_from_content_and_the_request_sent(server):
    replies = {"prompt 0": "A", "prompt 1": "B.", "prompt 2": "Output: (A)", "prompt 3": "**B** is better"}
    server.responder = lambda body: replies[body["messages"][0]["content"]]
    judge = make(server, max_tokens=4)
    got = run(judge, requests_(4))
    assert {i: (a.verdict, a.raw, a.attempts) for i, a in got.items()} == {
        0: ("A", "A", 1), 1: ("B", "B.", 1), 2: ("A", "Output: (A)", 1), 3: ("B", "**B** is better", 1)}
    sent = server.chat_requests
    assert len(sent) == 4
    assert sorted(r["json"]["messages"][0]["content"] for r in sent) == [f"prompt {i}" for i in range(4)]
    for r in sent:
        assert r["method"] == "POST"
        assert r["json"]["model"] == MODEL and r["json"]["temperature"] == 0 and r["json"]["max_tokens"] == 4
        assert r["json"]["messages"][0]["role"] == "user" and len(r["json"]["messages"]) == 1
        assert r["headers"]["authorization"] == f"Bearer {KEY}"


def test_invalid_answer_is_asked_once_more(server):
    calls: dict[str, int] = {}

    def responder(body: dict) -> str | None:
        text = body["messages"][0]["content"]
        calls[text] = calls.get(text, 0) + 1
        if text == "prompt 0":  # prose first, the label the second time
            return "Both are fine." if calls[text] == 1 else "B"
        if text == "prompt 1":
            return "A or B" if calls[text] == 1 else None  # null content: still invalid
        return "A"

    server.responder = responder
    got = run(make(server), requests_(3))
    assert got[0] == Answer(raw="B", verdict="B", attempts=2)
    assert got[1] == Answer(raw="", verdict="invalid", attempts=2)
    assert got[2] == Answer(raw="A", verdict="A", attempts=1)
    assert calls == {"prompt 0": 2, "prompt 1": 2, "prompt 2": 1}  # exactly one retry, never more
    assert len(server.chat_requests) == 5


def test_429_and_500_are_retried_then_succeed(server):
    server.failures = [429, 500, 503]
    start = time.monotonic()
    got = run(make(server, concurrency=1, max_retries=3), requests_(1))
    assert got[0].verdict == "A" and got[0].attempts == 1
    assert len(server.chat_requests) == 4
    assert time.monotonic() - start < 2  # retry-after-ms: 10 is honoured, no 0.5 s+ backoff


def test_still_failing_after_the_retries(server):
    server.failures = [500] * 3
    with pytest.raises(CurateError) as e:
        run(make(server, max_retries=2), requests_(1))
    assert "still failing (500) after 2 retries" in str(e.value) and server.base_url in str(e.value)
    assert len(server.chat_requests) == 3
    server.failures = [429] * 2
    with pytest.raises(CurateError, match=r"still failing \(429, rate limit\) after 1 retry: lower"):
        run(make(server, max_retries=1), requests_(1))


def test_concurrency_keeps_several_requests_in_flight(server):
    main_thread = threading.get_ident()
    threads: set[int] = set()

    def slow(body: dict) -> str:
        time.sleep(0.2)
        return "B"

    server.responder = slow
    judge = make(server, concurrency=4)
    got: dict[int, Answer] = {}

    def on_answer(i: int, answer: Answer) -> None:
        threads.add(threading.get_ident())
        got[i] = answer

    start = time.monotonic()
    judge.judge(requests_(8), on_answer)
    assert sorted(got) == list(range(8)) and {a.verdict for a in got.values()} == {"B"}
    assert 2 <= server.max_in_flight <= 4
    assert time.monotonic() - start < 1.4  # 8 x 0.2 s one at a time would be 1.6 s
    assert threads == {main_thread}  # on_answer runs in the caller's thread


def test_concurrency_one_is_one_at_a_time(server):
    server.responder = lambda body: time.sleep(0.02) or "A"
    run(make(server, concurrency=1), requests_(4))
    assert server.max_in_flight == 1


def test_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(CurateError, match=r"Set OPENAI_API_KEY .*--api-key-env.*export OPENAI_API_KEY=EMPTY"):
        OpenAIJudge(MODEL, base_url="http://127.0.0.1:1/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "")
    with pytest.raises(CurateError, match="OPENAI_API_KEY"):
        OpenAIJudge(MODEL, base_url="http://127.0.0.1:1/v1")
    with pytest.raises(CurateError, match="Set MY_JUDGE_KEY "):
        OpenAIJudge(MODEL, base_url="http://127.0.0.1:1/v1", api_key_env="MY_JUDGE_KEY")


def test_other_key_variable_is_used(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "not-this-one")
    monkeypatch.setenv("MY_JUDGE_KEY", KEY)
    assert run(make(server, api_key_env="MY_JUDGE_KEY"), requests_(1))[0].verdict == "A"


def test_wrong_key_is_401_without_the_key(server, monkeypatch):
    wrong = "sk-wrong-key-987654321"
    monkeypatch.setenv("OPENAI_API_KEY", wrong)
    judge = make(server)
    with pytest.raises(CurateError) as e:
        run(judge, requests_(3))
    message = str(e.value)
    assert "401" in message and "$OPENAI_API_KEY" in message and server.base_url in message
    assert wrong not in message and "sk-wrong" not in message  # the server quoted it; we must not
    assert e.value.__cause__ is None and e.value.__suppress_context__
    assert wrong not in judge.judge_id + json.dumps(judge.identity) + repr(judge)


def test_unknown_model_is_404_naming_it(server):
    with pytest.raises(CurateError) as e:
        run(make(server, model="no-such-model", concurrency=1), requests_(2))
    message = str(e.value)
    assert "'no-such-model'" in message and "404" in message and f"GET {server.base_url}/models" in message
    assert_no_key(message)
    assert len(server.chat_requests) == 1  # 404 is not retried, and after it no request starts


def test_unreachable_endpoint_names_the_url():
    with socket.socket() as s:  # a port that nothing listens on once this closes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(CurateError) as e:
        run(OpenAIJudge(MODEL, base_url=url, timeout=0.5, max_retries=0), requests_(2))
    assert f"cannot reach the judge endpoint {url}" in str(e.value) and "--base-url" in str(e.value)
    assert_no_key(e.value)


def test_timeout_names_the_url(server):
    server.responder = lambda body: time.sleep(1) or "A"
    with pytest.raises(CurateError, match=r"cannot reach the judge endpoint .*no answer within 0.2 s, after 0 retries"):
        run(make(server, timeout=0.2, max_retries=0), requests_(1))


def test_bad_request_quotes_the_server_truncated(server):
    long = "context too long: " + "x" * 1000
    server.responder = lambda body: (_ for _ in ()).throw(ServerError(400, long))
    with pytest.raises(CurateError) as e:
        run(make(server), requests_(1))
    message = str(e.value)
    assert "(400): context too long: xxx" in message and message.endswith("...")
    assert len(message) < 300 + 120


def test_answers_before_a_fatal_error_were_delivered(server):
    count = 0

    def responder(body: dict) -> str:
        nonlocal count
        count += 1
        if count == 3:
            raise ServerError(400, f"bad request, and here is a key for good measure: {KEY}")
        return "B"

    server.responder = responder
    got: dict[int, Answer] = {}
    with pytest.raises(CurateError) as e:
        make(server, concurrency=1).judge(requests_(6), lambda i, a: got.__setitem__(i, a))
    assert got == {0: Answer("B", "B"), 1: Answer("B", "B")}
    assert len(server.chat_requests) == 3  # after the error no request starts
    assert "bad request" in str(e.value)
    assert_no_key(e.value)


def test_in_flight_answers_are_kept_after_an_error(server):
    def responder(body: dict) -> str:
        if body["messages"][0]["content"] == "prompt 0":
            time.sleep(0.1)  # the others have started by now
            raise ServerError(400, "nope")
        time.sleep(0.3)  # still being answered when prompt 0 fails
        return "A"

    server.responder = responder
    got: dict[int, Answer] = {}
    with pytest.raises(CurateError, match="nope"):
        make(server, concurrency=3).judge(requests_(3), lambda i, a: got.__setitem__(i, a))
    assert sorted(got) == [1, 2]


def test_interrupt_in_the_caller_stops_asking(server):
    server.responder = lambda body: time.sleep(0.05) or "A"

    def on_answer(i: int, answer: Answer) -> None:
        raise KeyboardInterrupt  # as if Ctrl-C came while the caller stored the first verdict

    with pytest.raises(KeyboardInterrupt):
        make(server, concurrency=1).judge(requests_(6), on_answer)
    time.sleep(0.2)
    assert 1 <= len(server.chat_requests) <= 2  # the one in flight may finish; the queued ones are cancelled


def test_a_ready_client_is_used_as_it_is(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")  # not read when a client is given

    class Completions:
        def create(self, **kw):
            return "<html>a web page, not an API</html>"

    class Client:
        base_url = "http://10.1.2.3:8080/v1/"
        chat = type("Chat", (), {"completions": Completions()})()

    judge = OpenAIJudge("m", client=Client())
    assert judge.judge_id.startswith("openai:m@10.1.2.3:8080#")
    with pytest.raises(CurateError, match=r"not a chat completion \(check --base-url.*<html>a web page"):
        run(judge, requests_(1))


def test_judge_id_and_identity_hold_no_key_or_credentials():
    judge = OpenAIJudge("gpt-4o-mini")
    assert judge.identity == {"kind": "openai", "model": "gpt-4o-mini", "base_url": "https://api.openai.com/v1",
                              "max_tokens": 8, "temperature": 0}
    # the id: model, host, and a hash of the identity (a setting that changes verdicts is another judge)
    assert judge.judge_id == f"openai:gpt-4o-mini@api.openai.com#{identity_hash(judge.identity)}"
    assert OpenAIJudge("gpt-4o-mini", max_tokens=16).judge_id != judge.judge_id
    judge = OpenAIJudge("m", base_url="http://user:pw@10.0.0.5:8000/v1/?token=abc#frag")
    assert judge.judge_id.startswith("openai:m@10.0.0.5:8000#")
    assert judge.identity["base_url"] == "http://10.0.0.5:8000/v1"
    assert_no_key(judge.judge_id, json.dumps(judge.identity), repr(judge))


def test_empty_request_list_sends_nothing(server):
    make(server).judge([], lambda i, a: pytest.fail("no answer expected"))
    assert server.requests == []


def test_openai_is_imported_lazily():
    code = "import sys, curate.judge.openai_judge; print('openai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
