"""`curate eval winrate`: policy A against policy B on the same held-out prompts, judged in both orders.

    from curate.judge.winrate import compare, make_judge
    r = compare(ws, "checkpoints/ppo-split-even-it1", "checkpoints/ppo-random-it1", judge="hf:smollm2-135m")
    r.stats.describe()

1. Responses: each policy answers the prompts through curate.generate, on the branch eval/<policy_id>/<params>
   (iteration 1), so they are cached, resumable and recorded with the policy's identity; a side given as
   gen:BRANCH:ITERATION reads stored generations instead (sample 0).
2. Verdicts: every prompt is shown to the judge twice, A's response first and then B's (FRFT paper, Appendix A
   prompt). Verdicts go to the `judgments` table as they come, keyed by judge, template, prompt and the two
   responses in the order shown, so a rerun or a resumed comparison never asks for a judgment twice.
3. The outcome per prompt, from A's side: a win when A is preferred in both orders, a loss when B is, a tie when the
   verdict changes with the order (or the judge scores both the same); invalid when an answer was neither A nor B
   after one retry (counted, never dropped). curate.judge.stats turns the outcomes into the win rate and its
   intervals; the comparison is stored in `winrates`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from ..errors import CurateError
from ..generate import GenerateParams, Prompt
from ..stats import WinRate, summarize
from ..workspace import Workspace, utcnow
from .base import Answer, Judge, Request
from .template import Template, load_template, question_text

JUDGE_KINDS = ("openai", "hf", "rm")
A_SCORE = {"ab": {"A": 1.0, "B": 0.0, "tie": 0.5}, "ba": {"A": 0.0, "B": 1.0, "tie": 0.5}}
COMMIT_EVERY = 64  # verdicts per committed shard: an interruption loses at most these


def md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def make_judge(spec: str, template: Template, *, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
               concurrency: int = 8, batch_size: int = 8, max_length: int | None = 1024,
               reward_mode: str | None = None, mode_option: str = "--reward-mode") -> Judge:
    """openai:MODEL (with base_url), hf:MODEL_OR_FOLDER (a local causal LM) or rm:FOLDER (a reward model; an AVA
    one needs reward_mode, final or dense; mode_option: how errors name that setting)."""
    kind, _, model = spec.partition(":")
    if kind not in JUDGE_KINDS or not model:
        raise CurateError(f"--judge {spec!r}: expected openai:MODEL, hf:MODEL_OR_FOLDER or rm:FOLDER (e.g. "
                          "openai:gpt-4o --base-url URL, hf:smollm2-135m, rm:checkpoints/rm-all).")
    if reward_mode is not None and kind != "rm":
        raise CurateError(f"{mode_option} is for rm: judges (a reward model's reward mode); {spec} is not one.")
    if kind == "openai":
        from .openai_judge import OpenAIJudge

        return OpenAIJudge(model, base_url=base_url, api_key_env=api_key_env, concurrency=concurrency)
    if base_url:
        raise CurateError(f"--base-url is for openai: judges; {spec} runs here.")
    from .local import LocalLMJudge, RewardModelJudge

    if kind == "hf":
        return LocalLMJudge(model, template, batch_size=batch_size)
    return RewardModelJudge(model, batch_size=batch_size, max_length=max_length, reward_mode=reward_mode,
                            mode_option=mode_option)


# -- responses ----------------------------------------------------------------------------------------
@dataclass
class Side:
    spec: str  # what the user named: a policy (folder, Hub id, smollm2-135m) or gen:BRANCH:ITERATION
    policy_id: str = ""
    responses: dict[str, str] = field(default_factory=dict)  # prompt key -> response (sample 0)
    branch: str = ""
    generated: int = 0  # prompts generated now (0: all cached)


def eval_branch(policy_id: str, params: GenerateParams) -> str:
    """Where a policy's responses to eval prompts live: one branch per policy and sampling settings."""
    digest = md5(json.dumps(asdict(params), sort_keys=True))[:8]
    return f"eval/{policy_id}/{digest}"


def stored_side(ws: Workspace, spec: str) -> Side:
    _, branch, it = spec.split(":", 2) if spec.count(":") == 2 else (None, None, None)
    if not branch or not (it or "").isdigit():
        raise CurateError(f"{spec!r}: stored generations are named gen:BRANCH:ITERATION (e.g. gen:main:1).")
    with ws.connect() as con:
        rows = con.execute("select pair_id, text, policy from generations where branch = $b and iteration = $i "
                           "and sample = 0 order by pair_id", {"b": branch, "i": int(it)}).fetchall()
    if not rows:
        raise CurateError(f"{spec}: branch {branch!r}, iteration {it} has no generations in {ws.root} "
                          "(`curate generations` lists what there is).")
    policies = sorted({r[2] for r in rows})
    if len(policies) > 1:
        raise CurateError(f"{spec} holds the samples of several policies ({', '.join(policies)}).")
    return Side(spec, policies[0], {r[0]: r[1] for r in rows}, branch)


def policy_side(ws: Workspace, spec: str, prompts: list[Prompt], params: GenerateParams, batch_size: int,
                quiet: bool) -> Side:
    from ..generate import generate
    from ..models import resolve_policy
    from ..progress import generation_progress

    ref = resolve_policy(spec)
    branch = eval_branch(ref.model_id, params)
    with generation_progress(quiet) as progress:
        r = generate(ws, str(ref.folder), iteration=1, branch=branch, params=params, batch_size=batch_size,
                     prompts=prompts, progress=progress)
    keys = [p.key for p in prompts]
    with ws.connect() as con:
        rows = con.execute("select pair_id, text from generations where branch = $b and iteration = 1 and sample = 0 "
                           "and pair_id in (select unnest($k))", {"b": branch, "k": keys}).fetchall()
    return Side(spec, r.policy, dict(rows), branch, r.generated_prompts)


# -- judging ------------------------------------------------------------------------------------------
@dataclass
class Comparison:
    name: str
    a: Side
    b: Side
    judge_id: str
    judge_identity: dict
    template: str
    template_sha256: str
    prompts: int
    requested: int  # judgments asked for now
    cached: int  # judgments found in the table
    stats: WinRate
    comparison_id: str = ""
    identical: int = 0  # prompts both policies answered with the same text: ties, nothing asked
    seconds: float = 0.0
    manifest: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "comparison_id": self.comparison_id, "a": self.a.spec, "a_policy": self.a.policy_id,
                "b": self.b.spec, "b_policy": self.b.policy_id, "judge_id": self.judge_id,
                "judge": self.judge_identity, "template": self.template, "template_sha256": self.template_sha256,
                "prompts": self.prompts, "identical_responses": self.identical,
                "judgments_requested": self.requested, "judgments_cached": self.cached,
                "seconds": round(self.seconds, 3), "manifest": self.manifest, **self.stats.to_dict()}


def _cached(ws: Workspace, judge_id: str, template_sha: str) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(prompt_hash, shown-first hash, shown-second hash) -> (verdict, raw) of every verdict this judge made."""
    with ws.connect() as con:
        rows = con.execute(
            "select prompt_hash, case when \"order\" = 'ab' then a_hash else b_hash end, "
            "case when \"order\" = 'ab' then b_hash else a_hash end, verdict, raw from judgments "
            "where judge_id = $j and template_sha256 = $t order by created_at",
            {"j": judge_id, "t": template_sha}).fetchall()
    return {(p, f, s): (v, raw) for p, f, s, v, raw in rows}


def compare(ws: Workspace, a: str, b: str, judge: str | Judge = "hf:smollm2-135m", *, template: str | None = None,
            prompts: str | None = None, prompt_field: str = "prompt", split: str = "test", limit: int | None = None,
            seed: int = 0, params: GenerateParams | None = None, gen_batch_size: int = 16,
            judge_options: dict | None = None, n_boot: int = 1000, name: str | None = None, run: dict | None = None,
            quiet: bool = False,
            echo: Callable[[str], None] | None = None) -> Comparison:
    """Judge policy a against policy b (see the module doc); returns the comparison, stored in `winrates`."""
    from ..progress import count_progress, quiet_libraries
    from .prompts import eval_prompts

    quiet_libraries(quiet)  # before any model loads: the libraries' bars follow curate's rule
    t0 = time.perf_counter()
    echo = echo or (lambda _msg: None)
    ws.require()
    tpl = load_template(template)
    params = params or GenerateParams(max_new_tokens=128)
    if a == b:
        raise CurateError(f"--a and --b are the same ({a}): compare two different policies.")
    if n_boot < 1:
        raise CurateError(f"--bootstrap must be at least 1 (resamples of the win rate's interval); got {n_boot}.")
    # a judge is checked (its key, its endpoint and model) before any response is generated
    jd = judge if not isinstance(judge, str) else make_judge(judge, tpl, **(judge_options or {}))
    if hasattr(jd, "check"):
        jd.check()
    template_sha = "" if jd.judge_id.startswith("rm:") else tpl.sha256

    stored = {s: stored_side(ws, s) for s in (a, b) if s.startswith("gen:")}
    if stored and prompts is None:  # stored generations bring their own prompts: those both sides answered
        keys = set.intersection(*(set(s.responses) for s in stored.values()))
        pool = _pair_prompts(ws, keys)
        pool = sorted(pool, key=lambda p: hashlib.sha256(f"{seed}:{p.key}".encode()).hexdigest())[:limit or None]
    else:
        pool = eval_prompts(ws, prompts, prompt_field, split, limit, seed)
    sides = []
    for spec in (a, b):
        if spec in stored:
            sides.append(stored[spec])
        else:
            echo(f"responses of {spec} to {len(pool):,} prompts")
            sides.append(policy_side(ws, spec, pool, params, gen_batch_size, quiet))
    sa, sb = sides
    items = [(p, sa.responses[p.key], sb.responses[p.key]) for p in pool
             if p.key in sa.responses and p.key in sb.responses]
    if not items:
        raise CurateError(f"{a} and {b} have no responses to the same prompts: nothing to judge.")

    cache = _cached(ws, jd.judge_id, template_sha)
    verdicts: dict[tuple[str, str], str] = {}  # (prompt key, order) -> verdict
    todo: list[tuple[str, str, Request, tuple[str, str, str]]] = []
    asked: dict[tuple[str, str, str], int] = {}  # presentation -> its index in todo (each is asked once)
    waiting: dict[int, list[tuple[str, str]]] = {}  # todo index -> the (prompt key, order) it answers
    for p, ra, rb in items:
        if ra == rb:  # the same response twice: a tie, nothing to ask (and no position to be consistent about)
            verdicts[(p.key, "ab")] = verdicts[(p.key, "ba")] = "same"
            continue
        for order, (first, second) in (("ab", (ra, rb)), ("ba", (rb, ra))):
            key = (md5(p.text), md5(first), md5(second))
            if key in cache:
                verdicts[(p.key, order)] = cache[key][0]
            elif key in asked:
                waiting[asked[key]].append((p.key, order))
            else:
                asked[key] = len(todo)
                waiting[len(todo)] = [(p.key, order)]
                req = Request(tpl.render(question_text(p.text), first, second), p.text, first, second)
                todo.append((p.key, order, req, key))
    cached = sum(v != "same" for v in verdicts.values())
    if todo:
        echo(f"judging {len(todo):,} presentations with {jd.judge_id} ({cached:,} already judged)")
    responses = {p.key: (ra, rb) for p, ra, rb in items}
    pending: list[dict] = []

    def commit() -> None:
        if pending:
            import polars as pl

            with ws.transaction("curate eval winrate") as tx:
                tx.add("judgments", pl.DataFrame(pending))
            pending.clear()

    with count_progress(quiet, "judging", "judgments") as start:
        advance = start(len(todo)) if todo else None

        def on_answer(i: int, ans: Answer) -> None:
            pkey, order, req, (ph, _, _) = todo[i]
            ra, rb = responses[pkey]
            for answered in waiting[i]:
                verdicts[answered] = ans.verdict
            pending.append({"judge_id": jd.judge_id, "template_sha256": template_sha, "prompt_hash": ph,
                            "a_hash": md5(ra), "b_hash": md5(rb), "order": order, "raw": ans.raw,
                            "verdict": ans.verdict, "created_at": _now(),
                            "a_policy": sa.policy_id, "b_policy": sb.policy_id, "attempts": ans.attempts})
            if advance:
                advance(1)
            if len(pending) >= COMMIT_EVERY:
                commit()

        try:
            if todo:
                jd.judge([t[2] for t in todo], on_answer)
        finally:  # the verdicts made so far stay, whatever stopped the judge
            commit()

    outcomes, consistent, len_a, len_b = [], [], [], []
    for p, ra, rb in items:
        v_ab, v_ba = verdicts[(p.key, "ab")], verdicts[(p.key, "ba")]
        if v_ab == "same":
            outcomes.append(0.5)
            consistent.append(None)
        elif "invalid" in (v_ab, v_ba):
            outcomes.append(None)
            consistent.append(None)
        else:
            s_ab, s_ba = A_SCORE["ab"][v_ab], A_SCORE["ba"][v_ba]
            outcomes.append(s_ab if s_ab == s_ba else 0.5)  # a verdict that changes with the order is a tie
            consistent.append(s_ab == s_ba)
        len_a.append(len(ra))
        len_b.append(len(rb))
    stats = summarize(outcomes, consistent, len_a, len_b, n_boot=n_boot, seed=seed)
    identical = sum(ra == rb for _, ra, rb in items)
    name = name or f"{_short(sa.policy_id)}-vs-{_short(sb.policy_id)}"
    ident = json.dumps([sa.policy_id, sb.policy_id, jd.judge_id, template_sha, sorted(r for r in responses),
                        asdict(params), n_boot, seed], sort_keys=True)
    comp = Comparison(name, sa, sb, jd.judge_id, jd.identity, tpl.name, template_sha, len(items), len(todo), cached,
                      stats, comparison_id=md5(ident)[:16], identical=identical)
    comp.seconds = time.perf_counter() - t0
    _store(ws, comp, run or {}, params)
    return comp


def _now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).replace(tzinfo=None)


def _short(policy_id: str) -> str:
    return policy_id if len(policy_id) <= 40 else policy_id[:40]


def _pair_prompts(ws: Workspace, keys: set[str]) -> list[Prompt]:
    """One prompt per distinct prompt text (a prompt shared by several pairs has the same sample in each), keyed
    by its smallest pair_id, as curate.generate keys it."""
    with ws.connect() as con:
        rows = con.execute("select prompt, list(pair_id order by pair_id) from pairs where pair_id in "
                           "(select unnest($k)) group by prompt", {"k": sorted(keys)}).fetchall()
    return [Prompt(ids[0], text, ids) for text, ids in rows]


def _store(ws: Workspace, c: Comparison, run: dict, params: GenerateParams) -> None:
    import polars as pl

    from ..provenance import versions

    s = c.stats
    created = utcnow()
    c.manifest = str(ws.write_manifest("winrate", c.comparison_id, {
        "step": "eval winrate", "created_at": created, "run": run, "params": asdict(params),
        "versions": versions(), **c.to_dict()}))
    row = {"comparison_id": c.comparison_id, "name": c.name, "run_id": run.get("run_id"),
           "strategy": run.get("strategy"), "baseline": run.get("baseline"), "iteration": run.get("iteration"),
           "a_policy": c.a.policy_id, "b_policy": c.b.policy_id, "judge_id": c.judge_id,
           "template_sha256": c.template_sha256, "prompts": c.prompts, "judged": s.judged, "wins": s.wins,
           "losses": s.losses, "ties": s.ties, "invalid": s.invalid, "win_rate": s.win_rate, "ci_low": s.ci_low,
           "ci_high": s.ci_high, "wilson_low": s.wilson_low, "wilson_high": s.wilson_high,
           "lc_win_rate": s.lc_win_rate, "consistency": s.consistency,
           "stats": json.dumps({**s.to_dict(), "identical_responses": c.identical}),
           "created_at": _now()}
    with ws.transaction("curate eval winrate") as tx:
        tx.remove("winrates", ws.files("winrates", key=c.name))  # a comparison of the same name is replaced
        tx.add("winrates", pl.DataFrame([row]), key=c.name)
