"""`curate eval winrate` end to end with tiny policies: the openai judge against a loopback server, the hf judge
(its cached prefix against full passes), the rm judge, the stored judgments, and bad input."""

from __future__ import annotations

import json
import re

import pytest

from curate.errors import CurateError
from curate.generate import GenerateParams
from curate.judge.base import Request
from curate.judge.template import load_template, question_text
from curate.judge.winrate import compare
from curate.workspace import Workspace

from .conftest import hh_row, query, tiny_lm, write_jsonl
from .openai_server import OpenAIServer

KEY = "sk-test-very-secret-0123456789"
TEMPLATE = "Pick the better answer.\n\nHuman: {question}\n\nA. {answer_a}\n\nB. {answer_b}\n\nA or B?\n"
PARAMS = GenerateParams(max_new_tokens=6, temperature=0.0, seed=0)  # greedy: tiny near-uniform models differ


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    root = tmp_path_factory.mktemp("winrate-models")
    a = tiny_lm(root / "policy-a", seed=1, window=512)[0]
    b = tiny_lm(root / "policy-b", seed=2, window=512)[0]
    judge = tiny_lm(root / "judge-lm", seed=3, window=1024)[0]
    from transformers import AutoConfig, LlamaForSequenceClassification

    rm = root / "judge-rm"
    LlamaForSequenceClassification(AutoConfig.from_pretrained(a, num_labels=1)).save_pretrained(rm)
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(a).save_pretrained(rm)
    return {"a": str(a), "b": str(b), "judge": str(judge), "rm": str(rm)}


@pytest.fixture
def wws(cli, tmp_path):
    rows = [hh_row(f"how do I bake bread number {i}?", f"good {i}", f"bad {i}") for i in range(5)]
    src = write_jsonl(tmp_path / "data" / "helpful-base" / "test.jsonl", rows)
    assert cli("ingest", src, "-w", tmp_path / "ws", "-q").exit_code == 0
    return Workspace(tmp_path / "ws")


@pytest.fixture
def template_file(tmp_path):
    path = tmp_path / "judge.txt"
    path.write_text(TEMPLATE, encoding="utf-8")
    return str(path)


def run(ws, policies, judge, server=None, **kw):
    opts = {"base_url": server.base_url} if server else {}
    return compare(ws, policies["a"], policies["b"], judge, params=PARAMS, n_boot=200, quiet=True,
                   judge_options=opts, **kw)


def shown(body: dict) -> tuple[str, str]:
    text = body["messages"][0]["content"].rsplit("\n\nHuman: ", 1)[1]  # the examples end before the last turn
    m = re.search(r"\n\nA\. Assistant: (.*)\n\nB\. Assistant: (.*)\n\nWhich one is better", text, re.S)
    return m.group(1), m.group(2)


def test_openai_judge_sees_both_orders_a_position_flip_is_a_tie_and_a_rerun_asks_nothing(wws, policies, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with OpenAIServer(api_key=KEY, models=("judge",), responder=lambda body: "A") as server:  # always the first
        c = run(wws, policies, "openai:judge", server)
        sent = [shown(r["json"]) for r in server.chat_requests]
        # a rerun against the same endpoint finds every verdict stored and makes no request
        server.requests.clear()
        server.responder = lambda body: pytest.fail("asked again")
        again = run(wws, policies, "openai:judge", server)
        assert server.chat_requests == []
    n = c.prompts
    assert n == 5 and len(sent) == 2 * n and c.requested == 2 * n and c.cached == 0
    # every pair of responses was shown both ways round
    assert {(x, y) for x, y in sent} == {(y, x) for x, y in sent}
    s = c.stats
    assert (s.judged, s.wins, s.losses, s.ties, s.invalid) == (5, 0, 0, 5, 0)
    assert s.win_rate == 0.5 and s.consistency == 0.0 and not s.significant
    rows = query(wws.root, "select \"order\", verdict, attempts, judge_id from judgments order by 1")
    assert len(rows) == 10 and {r[1] for r in rows} == {"A"} and rows[0][3].startswith("openai:judge@127.0.0.1:")
    assert again.cached == 10 and again.requested == 0 and again.stats.win_rate == 0.5
    # the key is in no file of the workspace
    for path in wws.root.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_openai_judge_retries_429_and_500_and_counts_an_invalid_answer(wws, policies, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    first_prompt = {}

    def responder(body):
        a, b = shown(body)
        q = body["messages"][0]["content"].split("\n\nHuman: ")[-1].split("\n\n")[0]
        first_prompt.setdefault("q", q)
        if q == first_prompt["q"]:
            return "I cannot decide"  # neither A nor B, twice
        return "A" if (len(a), a) > (len(b), b) else "B"  # the same answer wins whichever place it has

    with OpenAIServer(api_key=KEY, responder=responder, failures=[429, 500]) as server:
        c = run(wws, policies, "openai:judge", server)
        statuses = len(server.chat_requests)
    s = c.stats
    assert s.invalid == 1 and s.judged == 4 and s.prompts == 5
    # 10 presentations, the 2 of the undecided prompt retried once each, and the 2 failures retried
    assert statuses == 10 + 2 + 2
    attempts = query(wws.root, "select verdict, attempts from judgments where verdict = 'invalid'")
    assert attempts == [("invalid", 2), ("invalid", 2)]
    assert s.consistency == 1.0 and s.ties == 0  # a judge that follows content, not position, is consistent


def test_a_failing_judge_keeps_the_verdicts_it_made(wws, policies, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    calls = {"n": 0}

    def responder(body):
        calls["n"] += 1
        if calls["n"] > 4:
            from .openai_server import ServerError

            raise ServerError(400, "context length exceeded")
        return "B"

    with OpenAIServer(api_key=KEY, responder=responder) as server:
        opts = {"base_url": server.base_url, "concurrency": 1}
        with pytest.raises(CurateError, match="context length exceeded"):
            compare(wws, policies["a"], policies["b"], "openai:judge", params=PARAMS, quiet=True, judge_options=opts)
    assert query(wws.root, "select count(*) from judgments")[0][0] == 4
    assert query(wws.root, "select count(*) from winrates")[0][0] == 0


def test_missing_key_fails_before_any_response_is_generated(wws, policies, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(CurateError, match="OPENAI_API_KEY"):
        run(wws, policies, "openai:judge", None)
    assert query(wws.root, "select count(*) from generations")[0][0] == 0


def test_hf_judge_cached_prefix_gives_the_full_pass_verdicts(wws, policies, template_file):
    from curate.judge.local import LocalLMJudge

    tpl = load_template(template_file)
    judge = LocalLMJudge(policies["judge"], tpl, batch_size=3)
    reqs = [Request(tpl.render(question_text(f"\n\nHuman: q{i}?\n\nAssistant:"), "yes " * i, "no"), "", "", "")
            for i in range(7)]
    cached, full = {}, {}
    judge.judge(reqs, lambda i, a: cached.__setitem__(i, a))
    judge.judge_naive(reqs, lambda i, a: full.__setitem__(i, a))
    assert sorted(cached) == sorted(full) == list(range(7))
    for i in range(7):
        x, y = json.loads(cached[i].raw), json.loads(full[i].raw)
        assert x["logprob_a"] == pytest.approx(y["logprob_a"], abs=1e-4)
        assert x["logprob_b"] == pytest.approx(y["logprob_b"], abs=1e-4)
        assert cached[i].verdict == full[i].verdict
    # end to end: the stored verdicts are the model's argmax, and a rerun reuses them
    c = run(wws, policies, f"hf:{policies['judge']}", template=template_file)
    assert c.judge_id.startswith("hf:") and c.requested == 10 and c.stats.invalid == 0
    raws = query(wws.root, "select raw, verdict from judgments")
    for raw, verdict in raws:
        p = json.loads(raw)
        assert verdict == ("A" if p["logprob_a"] > p["logprob_b"] else "B")
    assert run(wws, policies, f"hf:{policies['judge']}", template=template_file).requested == 0


def test_rm_judge_is_consistent_in_both_orders(wws, policies):
    c = run(wws, policies, f"rm:{policies['rm']}")
    s = c.stats
    assert c.template_sha256 == "" and s.judged == 5 and s.consistency == 1.0 and s.ties == 0
    rows = query(wws.root, "select raw, verdict, \"order\" from judgments")
    for raw, verdict, _ in rows:
        r = json.loads(raw)
        assert verdict == ("A" if r["reward_a"] > r["reward_b"] else "B")
    stored = query(wws.root, "select wins, losses, ties, win_rate, judge_id from winrates")
    assert stored == [(s.wins, s.losses, s.ties, s.win_rate, c.judge_id)]


def test_cli_prints_the_interval_and_the_json(cli, wws, policies):
    r = cli("eval", "winrate", "--a", policies["a"], "--b", policies["b"], "--judge", f"rm:{policies['rm']}",
            "--max-new-tokens", "6", "--temperature", "0", "--bootstrap", "100", "-w", wws.root, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["judged"] == 5 and out["ci_low"] <= out["win_rate"] <= out["ci_high"]
    assert out["judgments_requested"] == 10
    r = cli("eval", "winrate", "--a", policies["a"], "--b", policies["b"], "--judge", f"rm:{policies['rm']}",
            "--max-new-tokens", "6", "--temperature", "0", "--bootstrap", "100", "-w", wws.root)
    assert r.exit_code == 0 and "95% bootstrap" in r.stdout and "found stored 10" in r.stderr


def test_prompt_file_and_its_errors(wws, policies, tmp_path):
    good = write_jsonl(tmp_path / "p.jsonl", [{"instruction": "Name a fruit."}, {"instruction": "Name a colour."}])
    c = run(wws, policies, f"rm:{policies['rm']}", prompts=str(good), prompt_field="instruction")
    assert c.prompts == 2
    keys = query(wws.root, "select distinct pair_id from generations where branch like 'eval/%' and pair_id like "
                           "'prompt-%'")
    assert len(keys) == 2
    with pytest.raises(CurateError, match=r"has no 'prompt' column \(it has instruction\).*--prompt-field"):
        run(wws, policies, f"rm:{policies['rm']}", prompts=str(good))
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "ok"}, {"prompt": ""}])
    with pytest.raises(CurateError, match="row 2: field 'prompt'"):
        run(wws, policies, f"rm:{policies['rm']}", prompts=str(bad))


def test_template_errors(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("Which is better, {answer_a} or {answer_b}?", encoding="utf-8")
    with pytest.raises(CurateError, match=r"lacks the placeholder\(s\) \{question\}"):
        load_template(str(path))
    with pytest.raises(CurateError, match="neither a built-in template"):
        load_template("no-such-template")


def test_shipped_templates_differ_only_in_example_2():
    published, corrected = load_template("frft-appendix-a"), load_template()
    assert corrected.name == "frft-appendix-a-corrected"
    diff = [(x, y) for x, y in zip(published.text.splitlines(), corrected.text.splitlines()) if x != y]
    assert diff == [("Output: B", "Output: A")]
    ex2 = corrected.text.split("Example 2:")[1].split("Example 3:")[0]
    assert "Output: A" in ex2 and "We should choose A for example 2" in corrected.text


def test_judge_prompt_matches_the_shared_text():
    from pathlib import Path

    shared = Path(__file__).resolve().parents[2] / "shared" / "frft_judge_prompt.txt"
    if not shared.is_file():
        pytest.skip(f"{shared} is not there (clone the repo with ../shared beside it)")
    body = "".join(line for line in shared.read_text(encoding="utf-8").splitlines(keepends=True)
                   if not line.startswith("#"))
    assert load_template("frft-appendix-a").text.strip() == body.strip()


def test_unknown_judge_kind():
    from curate.judge.winrate import make_judge

    with pytest.raises(CurateError, match="expected openai:MODEL, hf:MODEL_OR_FOLDER or rm:FOLDER"):
        make_judge("claude:opus", load_template())


def test_an_unknown_model_fails_before_any_response_and_the_key_is_never_shown(cli, wws, policies, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with OpenAIServer(api_key=KEY, models=("judge",)) as server:
        r = cli("eval", "winrate", "--a", policies["a"], "--b", policies["b"], "--judge", "openai:nope",
                "--base-url", server.base_url, "-w", wws.root)
        assert r.exit_code == 1 and "has no model 'nope'" in r.stderr
        assert server.chat_requests == []
        assert query(wws.root, "select count(*) from generations")[0][0] == 0
        r = cli("eval", "winrate", "--a", policies["a"], "--b", policies["b"], "--judge", "openai:judge",
                "--base-url", server.base_url, "--max-new-tokens", "6", "--temperature", "0", "-w", wws.root)
        assert r.exit_code == 0, r.output
        assert KEY not in r.stdout + r.stderr
    r = cli("eval", "winrate", "--a", policies["a"], "--b", policies["b"], "--judge", "openai:judge",
            "--base-url", "http://127.0.0.1:9/v1", "-w", wws.root)  # nothing listens on port 9
    assert r.exit_code == 1 and "cannot reach the judge endpoint http://127.0.0.1:9/v1" in r.stderr
    assert query(wws.root, "select count(*) from judgments")[0][0] == 10  # the earlier verdicts stay


def test_stored_generations_identical_responses_and_bootstrap_checks(wws, policies, cli, tmp_path):
    """gen:BRANCH:ITERATION sides; a prompt where both policies wrote the same text is a tie with no request."""
    from curate.generations import import_generations

    pids = [r[0] for r in query(wws.root, "select pair_id from pairs order by pair_id")]
    a_rows = [{"pair_id": p, "text": f"answer {i}"} for i, p in enumerate(pids)]
    b_rows = [{"pair_id": p, "text": "answer 0" if i == 0 else f"other {i}"} for i, p in enumerate(pids)]
    import_generations(wws, str(write_jsonl(tmp_path / "a.jsonl", a_rows)), iteration=1, branch="ga", policy="pa")
    import_generations(wws, str(write_jsonl(tmp_path / "b.jsonl", b_rows)), iteration=1, branch="gb", policy="pb")
    c = compare(wws, "gen:ga:1", "gen:gb:1", f"rm:{policies['rm']}", n_boot=100, quiet=True)
    assert (c.a.policy_id, c.b.policy_id, c.prompts) == ("pa", "pb", 5)
    assert c.requested == 8  # 4 prompts x 2 orders; the identical pair asks nothing
    assert c.stats.ties >= 1 and c.stats.judged == 5 and c.stats.consistency == 1.0
    with pytest.raises(CurateError, match="--bootstrap must be at least 1"):
        compare(wws, "gen:ga:1", "gen:gb:1", f"rm:{policies['rm']}", n_boot=0, quiet=True)
    with pytest.raises(CurateError, match="gen:BRANCH:ITERATION"):
        compare(wws, "gen:ga", "gen:gb:1", f"rm:{policies['rm']}", quiet=True)


def test_report_winrate_long_png_and_plain_comparisons(cli, wws, policies, tmp_path):
    run(wws, policies, f"rm:{policies['rm']}", name="a-vs-b")
    r = cli("report", "winrate", "-w", wws.root, "--png", tmp_path / "w.png")
    assert r.exit_code == 0, r.output
    assert "a-vs-b" in r.stdout and "win % [95% CI]" in r.stdout and (tmp_path / "w.png").stat().st_size > 1000
    r = cli("report", "winrate", "-w", wws.root, "--long", "--format", "csv")
    assert r.exit_code == 0 and r.stdout.splitlines()[0].startswith("run_id,strategy,baseline,iteration,name")
    r = cli("report", "winrate", "-w", wws.root, "--run", "nosuch")
    assert r.exit_code == 1 and "No win rates for run 'nosuch'" in r.stderr
    r = cli("report", "html", "-w", wws.root, "-o", tmp_path / "r.html")
    assert r.exit_code == 0 and "Win rates against the baseline" in (tmp_path / "r.html").read_text()
