"""`curate run` (issue #7): the whole FRFT(alpha) loop with tiny models, its lineage, resume and config errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.errors import CurateError
from curate.run.config import load, parse
from curate.workspace import Workspace

from .conftest import hh_row, query, write_jsonl
from .test_generate import tiny  # noqa: F401 - the tiny byte-level BPE policy, a session fixture

pytest.importorskip("torch")
pytest.importorskip("trl")

STRATEGIES = ["overall", "positive"]


def rows(n: int, start: int = 0) -> list[dict]:
    return [hh_row(f"question {i} about topic {i % 7} ?", f"answer {i % 5} is good and kind",
                   f"answer {i % 5} is bad") for i in range(start, start + n)]


def toml(cfg: dict) -> str:
    """A small TOML writer for the config dicts of these tests (tables of scalars and lists)."""
    out = []
    for section, values in cfg.items():
        out.append(f"[{section}]")
        out += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny) -> dict:  # noqa: F811 - the imported fixture
    tmp = tmp_path_factory.mktemp("run")
    train = write_jsonl(tmp / "data" / "toy" / "train.jsonl", rows(32))
    test = write_jsonl(tmp / "data" / "toy" / "test.jsonl", rows(8, start=1000))
    base = tiny[0]
    template = tmp / "judge.txt"  # short: the tiny model's window is 64 tokens
    template.write_text("{question}\nA:{answer_a}\nB:{answer_b}\n", encoding="utf-8")
    cfg = {
        "run": {"name": "toy", "workspace": str(tmp / "ws"), "alpha": 2, "strategies": STRATEGIES, "seed": 0},
        "data": {"sources": [str(train), str(test)], "sft_fraction": 0.25, "split": "train", "eval_split": "test"},
        "sft": {"model": str(base), "max_steps": 2, "batch_size": 4, "max_length": 64, "lr": 1e-3},
        "generate": {"max_new_tokens": 6, "batch_size": 8, "chat_template": False, "limit": 12},
        "filter": {"eps": 2.0, "size": 6},
        "rm": {"batch_size": 4, "max_length": 64, "lr": 1e-3, "eval_pairs": 4},
        "ppo": {"steps": 1, "batch_size": 2, "mini_batch_size": 1, "max_new_tokens": 4, "ppo_epochs": 1,
                "dtype": "float32"},
        "eval": {"judge": f"hf:{base}", "template": str(template), "prompts": 6, "max_new_tokens": 4,
                 "bootstrap": 100},
    }
    path = tmp / "toy.toml"
    path.write_text(toml(cfg), encoding="utf-8")
    return {"tmp": tmp, "config": path, "cfg": cfg, "ws": tmp / "ws"}


def steps_of(ws: Path, run_id: str = "toy") -> list[tuple]:
    return query(ws, "select step, branch, iteration, status from runs where run_id = $r "
                     "order by started_at, finished_at", {"r": run_id})


@pytest.fixture(scope="module")
def finished(setup):
    """Run the loop, stopped by a Ctrl-C inside iteration 2's rm step of `positive`, then resumed."""
    import curate.train.rm as rm_mod
    from curate.run import Runner

    cfg = load(setup["config"])
    real = rm_mod.train_rm
    calls = {"n": 0}

    def interrupted(config):
        if "positive/rm-it2" in config.output.replace("\\", "/"):
            raise KeyboardInterrupt  # the user pressed Ctrl-C in the middle of this step
        calls["n"] += 1
        return real(config)

    rm_mod.train_rm = interrupted
    first = Runner(cfg, quiet=True)
    try:
        with pytest.raises(KeyboardInterrupt):
            first.execute()
    finally:
        rm_mod.train_rm = real
    before = steps_of(setup["ws"])
    second = Runner(load(setup["config"]), resume=True, quiet=True)
    second.execute()
    return {"first": first, "second": second, "before": before, "rm_calls_first": calls["n"]}


def test_the_first_attempt_stops_at_the_interrupted_step(finished):
    before = finished["before"]
    assert before[-1] == ("rm", "toy/positive", 2, "interrupted")
    assert all(status == "done" for *_, status in before[:-1])
    assert finished["rm_calls_first"] == 4  # overall, positive and the random baseline in it1, overall it2


def test_resume_skips_finished_steps_and_reruns_the_interrupted_one(finished):
    second = finished["second"]
    done_first = {f"{s}/{b}/it{i}" for s, b, i, status in finished["before"] if status == "done"}
    assert set(second.skipped) == done_first
    assert second.ran == ["rm/toy/positive/it2", "ppo/toy/positive/it2", "filter/toy/random/it2", "rm/toy/random/it2",
                          "ppo/toy/random/it2", "eval/toy/it2", "report/toy/it2"]


def test_plan_order_and_lineage(setup, finished):
    ws = setup["ws"]
    done = [r[:3] for r in steps_of(ws) if r[3] == "done"]
    branches = [f"toy/{s}" for s in STRATEGIES]
    expected = [("ingest", "toy", 0), ("sft", "toy", 0), ("generate", "toy", 1), ("embed", "toy", 1),
                ("score", "toy", 1)]
    for b in branches + ["toy/random"]:  # the baseline branch trains like the others
        expected += [("filter", b, 1), ("rm", b, 1), ("ppo", b, 1)]
    expected += [("eval", "toy", 1)]
    expected += [("generate", b, 2) for b in branches] + [("embed", "toy", 2)]  # the baseline does not sample
    for b in branches:
        expected += [("score", b, 2), ("filter", b, 2), ("rm", b, 2), ("ppo", b, 2)]
    expected += [("filter", "toy/random", 2), ("rm", "toy/random", 2), ("ppo", "toy/random", 2), ("eval", "toy", 2)]
    expected += [("report", "toy", 2)]
    assert done == expected

    out = {(s, b, i): json.loads(o) for s, b, i, o in query(
        ws, "select step, branch, iteration, outputs from runs where status = 'done'")}
    inp = {(s, b, i): json.loads(x) for s, b, i, x in query(
        ws, "select step, branch, iteration, inputs from runs where status = 'done'")}
    sft = out[("sft", "toy", 0)]["checkpoint"]
    # the SFT model sees the sft half of the training split only: held-out pairs stay held out
    assert out[("sft", "toy", 0)]["rows"] == query(
        ws, "select count(*) from pairs where role = 'sft' and split = 'train'")[0][0]
    assert query(ws, "select count(*) from pairs where role = 'sft' and split = 'test'")[0][0] > 0
    for s in STRATEGIES:
        b = f"toy/{s}"
        # subset -> RM -> policy -> next generations, all linked by name and path
        assert out[("filter", b, 1)]["subset"] == f"toy-{s}-it1" == inp[("rm", b, 1)]["subset"]
        assert inp[("rm", b, 1)]["base"] == sft
        assert inp[("ppo", b, 1)]["reward"] == out[("rm", b, 1)]["checkpoint"]
        assert inp[("ppo", b, 1)]["policy"] == sft and inp[("ppo", b, 1)]["reference"] == sft
        assert inp[("generate", b, 2)]["policy"] == out[("ppo", b, 1)]["checkpoint"]
        assert inp[("rm", b, 2)]["base"] == out[("rm", b, 1)]["checkpoint"]  # the RM is fine-tuned again
        assert inp[("ppo", b, 2)]["policy"] == out[("ppo", b, 1)]["checkpoint"]
        assert inp[("ppo", b, 2)]["reference"] == sft  # KL against pi_ref in every iteration
        assert out[("filter", b, 2)]["subset"] == f"toy-{s}-it2"
        assert 0 <= out[("rm", b, 1)]["eval_accuracy"] <= 1 and out[("rm", b, 1)]["eval_pairs"] == 4


def test_iteration_2_samples_each_branch_s_own_ppo_policy(setup, finished):
    from curate.models import resolve_policy

    ws = setup["ws"]
    branches = [f"toy/{s}" for s in STRATEGIES]
    policies = dict(query(ws, "select branch, any_value(policy) from generations where iteration = 2 group by 1"))
    assert set(policies) == set(branches)
    for b in branches:
        ppo_it1 = json.loads(query(ws, "select outputs from runs where step = 'ppo' and branch = $b and iteration = 1 "
                                       "and status = 'done'", {"b": b})[0][0])["checkpoint"]
        assert policies[b] == resolve_policy(ppo_it1).model_id
    assert policies[branches[0]] != policies[branches[1]]  # two policies, trained apart
    sft = query(ws, "select distinct policy from generations where iteration = 1 and branch not like 'eval/%'")
    assert len(sft) == 1 and sft[0][0] not in policies.values()
    # iteration 1 is sampled once, on the run's shared branch: no per-branch copies, and `main` is untouched
    assert query(ws, "select distinct branch from generations where iteration = 1 and branch not like 'eval/%'") == \
        [("toy",)]
    # each branch's iteration-2 subset was filtered from its own similarities
    assert dict(query(ws, "select name, branch from subsets where name like 'toy-%-it2'")) == \
        {**{f"toy-{s}-it2": f"toy/{s}" for s in STRATEGIES}, "toy-random-it2": "toy"}  # the baseline: it1's pairs


def test_report_outputs_exist_and_the_intersection_is_per_strategy(finished):
    report = finished["second"].done["report/toy/it2"]
    for key in ("intersect", "intersect_png", "cdf", "html"):
        assert Path(report[key]).is_file(), key
    assert sorted(r["strategy"] for r in report["intersect_rows"]) == sorted(STRATEGIES)
    html = Path(report["html"]).read_text(encoding="utf-8")
    assert "FRFT runs" in html and "toy-positive-it2" in html and "ppo-it1" in html


def test_cli_runs_shows_the_lineage_and_a_rerun_without_resume_is_refused(cli, setup, finished):
    r = cli("runs", "--config", setup["config"])
    assert r.exit_code == 0, r.output
    assert "ppo" in r.stdout and "positive" in r.stdout and "toy-positive-it2" in r.stdout
    r = cli("runs", "-w", setup["ws"], "--json")
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert {x["status"] for x in lines} == {"done", "interrupted"}
    r = cli("run", "--config", setup["config"], "-q")
    assert r.exit_code == 1 and "already exists" in r.stderr and "--resume" in r.stderr
    r = cli("run", "--config", setup["config"], "--resume")  # everything done: every step skipped
    assert r.exit_code == 0, r.output
    assert "0 steps run" in r.stderr and "skip" in r.stderr and "intersection" in r.stderr


def test_a_killed_process_leaves_running_rows_that_resume_marks_interrupted(setup, finished):
    from curate.run import Runner, Step
    from curate.runs import step_row, write_row

    cfg = load(setup["config"])
    runner = Runner(cfg, resume=True, quiet=True)
    # what a SIGKILL leaves behind: a row still 'running'
    s = Step("report", "toy", 2, lambda: {"strategies": STRATEGIES}, lambda: {})
    write_row(runner.ws, step_row("toy", s.step, s.branch, s.iteration, s.inputs(), "running", cfg.sha256,
                                  "2026-01-01T00:00:00Z", None), None)
    runner.execute()
    statuses = [r[3] for r in steps_of(setup["ws"]) if r[0] == "report"]
    assert "running" not in statuses and statuses.count("interrupted") == 1


def test_dry_run_estimates_without_loading_a_model(cli, setup, finished):
    r = cli("run", "--config", setup["config"], "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    est = json.loads(r.stdout)
    it1, it2 = est["iterations"]
    assert it1["prompts"] == 12 and it1["tokens_to_generate"] == 12 * 6
    assert it2["policies_sampled"] == 2 and it2["tokens_to_generate"] == 2 * 12 * 6
    assert it1["ppo_steps"] == 2 and est["complete"]
    # the finished run measured its own throughput, which replaces the defaults
    assert est["throughput"]["generate_tokens_per_s"]["from"].startswith("run toy")


def test_resume_with_a_changed_filter_reruns_what_depends_on_it(cli, setup, finished):
    """Runs last on the toy run: it changes the run's config."""
    from curate.run import Runner

    ws = setup["ws"]
    changed = setup["tmp"] / "changed.toml"
    cfg = json.loads(json.dumps(setup["cfg"]))
    cfg["data"]["sources"] = cfg["data"]["sources"][:1]
    changed.write_text(toml(cfg), encoding="utf-8")
    r = cli("run", "--config", changed, "--resume", "-q")
    assert r.exit_code == 1 and "data.sources changed" in r.stderr and "another [run] name" in r.stderr

    cfg = json.loads(json.dumps(setup["cfg"]))
    cfg["filter"]["size"] = 5
    changed.write_text(toml(cfg), encoding="utf-8")
    old_policies = dict(query(ws, "select branch, any_value(policy) from generations where iteration = 2 group by 1"))
    runner = Runner(load(changed), resume=True, quiet=True)
    runner.execute()
    assert runner.changed == ["filter.size"]
    # what comes before the filters is kept; each branch from its filter on runs again, then iteration 2
    assert set(runner.skipped) == {"ingest/toy/it0", "sft/toy/it0", "generate/toy/it1", "embed/toy/it1",
                                   "score/toy/it1"}
    for s in STRATEGIES:
        for step in ("filter", "rm", "ppo"):
            assert f"{step}/toy/{s}/it1" in runner.ran and f"{step}/toy/{s}/it2" in runner.ran
        assert f"generate/toy/{s}/it2" in runner.ran
    assert dict(query(ws, "select name, count(*) from subset_pairs join subsets using (subset_id) "
                          "where name like 'toy-%' and name not like '%-heldout' group by 1")) == \
        {f"toy-{s}-it{k}": 5 for s in STRATEGIES + ["random"] for k in (1, 2)}
    new_policies = dict(query(ws, "select branch, any_value(policy) from generations where iteration = 2 "
                                  "group by 1"))
    assert set(new_policies) == set(old_policies)
    assert query(ws, "select count(*) from generations where iteration = 2")[0][0] == 2 * 12  # replaced, not added
    r = cli("run", "--config", changed, "--resume", "-q")  # and now nothing is left to do
    assert r.exit_code == 0, r.output


# -- the config --------------------------------------------------------------------------------------
@pytest.mark.parametrize("doc, message", [
    ({"data": {"sources": ["demo"]}, "rm": {"lrr": 1e-5}}, "unknown key 'lrr' in [rm] (did you mean 'lr'?)"),
    ({"data": {"sources": ["demo"]}, "ppoo": {}}, "unknown section [ppoo] (did you mean 'ppo'?)"),
    ({"data": {"sources": ["demo"]}, "run": {"alpha": "2"}}, "[run] alpha must be a whole number"),
    ({"data": {"sources": ["demo"]}, "run": {"strategies": ["overal"]}}, "did you mean 'overall'?"),
    ({"data": {"sources": ["demo"]}, "filter": {"eps": 3}}, "[filter] eps must be in (0, 2]"),
    ({"data": {}}, "[data] sources is missing"),
    ({"data": {"sources": ["demo"]}, "ppo": {"batch_size": 6, "mini_batch_size": 4}}, "multiple of mini_batch_size"),
])
def test_config_errors_name_the_file_section_and_key(doc, message):
    with pytest.raises(CurateError) as e:
        parse(doc, "my.toml")
    assert str(e.value).startswith("my.toml: ") and message in str(e.value)


def test_errors_from_a_file_name_the_line(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[run]\nalpha = 2\n\n[data]\nsources = ["demo"]\n\n[rm]\nlr = 1e-5\nlrr = 2\n', encoding="utf-8")
    with pytest.raises(CurateError, match=r"c.toml, line 9: unknown key 'lrr' in \[rm\]"):
        load(path)
    path.write_text('[data]\nsources = ["demo"]\n[run]\nalpha = 0\n', encoding="utf-8")
    with pytest.raises(CurateError, match=r"c.toml, line 4: \[run\] alpha must be at least 1"):
        load(path)


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(CurateError, match="valid keys: lr, epochs, batch_size"):
        parse({"data": {"sources": ["demo"]}, "rm": {"nope": 1}})


def test_shipped_configs_parse():
    root = Path(__file__).resolve().parents[1] / "configs"
    demo, paper = load(root / "demo.toml"), load(root / "frft-hh.toml")
    assert demo.run.alpha == 2 and demo.run.strategies == ["split-even"] and demo.run.baseline == "random"
    assert demo.branches == ["split-even", "random"] and demo.eval.judge == "hf:smollm2-135m"
    assert paper.run.strategies == ["overall", "split-even", "negative", "positive"] and paper.eval.prompts == 1000
    assert (paper.sft.model, paper.embed.model) == ("gpt2-medium", "AnnaWegmann/Style-Embedding")
    assert (paper.filter.size, paper.filter.eps, paper.run.alpha) == (2000, 0.2, 2)
    assert (paper.ppo.actor_lr, paper.ppo.critic_lr, paper.ppo.kl_coef, paper.rm.lr) == (5e-6, 9e-6, 0.02, 9e-6)
    assert paper.data.sft_fraction == 0.5


def test_bad_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nname = 1\n", encoding="utf-8")
    with pytest.raises(CurateError, match=r"bad.toml: not valid TOML"):
        load(bad)
    with pytest.raises(CurateError, match="no such file"):
        load(tmp_path / "nope.toml")


def test_a_run_killed_with_sigkill_resumes_to_the_same_lineage(setup, tmp_path):
    """A real `curate run` process, killed with SIGKILL once a few steps are done, then resumed."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from curate.run import Runner

    cfg = json.loads(json.dumps(setup["cfg"]))
    cfg["run"] |= {"name": "killed", "workspace": str(tmp_path / "ws"), "strategies": ["negative"]}
    path = tmp_path / "killed.toml"
    path.write_text(toml(cfg), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "curate.cli", "run", "--config", str(path), "-q"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    done: list = []
    while time.monotonic() < deadline and proc.poll() is None:
        if (tmp_path / "ws" / "state.json").exists():
            done = [r for r in steps_of(tmp_path / "ws", "killed") if r[3] == "done"]
            if len(done) >= 4:  # ingest, sft, generate, embed (at least)
                break
        time.sleep(0.2)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = steps_of(tmp_path / "ws", "killed")
    finished_before = {f"{s}/{b}/it{i}" for s, b, i, status in killed_at if status == "done"}
    assert len(finished_before) >= 4

    runner = Runner(load(path), resume=True, quiet=True)
    runner.execute()
    assert set(runner.skipped) == finished_before  # nothing that was done is done again
    rows = steps_of(tmp_path / "ws", "killed")
    assert "running" not in {r[3] for r in rows}
    plan = [s.key for s in runner.plan()]
    assert {f"{s}/{b}/it{i}" for s, b, i, status in rows if status == "done"} == set(plan)
    # iteration 2 sampled the branch's own PPO policy of iteration 1, as in the uninterrupted run
    ppo1 = runner.done["ppo/killed/negative/it1"]["checkpoint"]
    assert runner.done["generate/killed/negative/it2"]["policy_path"] == ppo1
    # what the kill left half-written is gone, and every live file is what its commit recorded (issue 19)
    from curate.check import check

    from .test_kill import temporaries, unreferenced

    assert temporaries(tmp_path / "ws") == [] and unreferenced(tmp_path / "ws") == []
    assert check(Workspace(tmp_path / "ws")).ok


def test_baseline_branch_and_eval_step(setup, finished, cli):
    """random draws anew each iteration from iteration 1's scored pairs; the eval step compares each strategy's
    policy with the baseline's on held-out prompts and stores the comparison; report winrate shows it."""
    import hashlib

    ws = setup["ws"]
    for k in (1, 2):
        size = json.loads(query(ws, "select params from subsets where name = $n", {"n": f"toy-random-it{k}"})[0][0])[
            "size"]
        got = [r[0] for r in query(ws, "select sp.pair_id from subset_pairs sp join subsets s using (subset_id) "
                                       "where s.name = $n order by sp.rank", {"n": f"toy-random-it{k}"})]
        scored = [r[0] for r in query(ws, "select pair_id from similarities where branch = 'toy' and iteration = 1")]
        drawn = sorted(scored, key=lambda p: (hashlib.md5(f"{k - 1}:{p}".encode()).hexdigest(), p))[:size]
        assert got == drawn, k  # seed = run seed + k - 1
    rows = query(ws, "select strategy, baseline, iteration, judged, win_rate, ci_low, ci_high, run_id from winrates "
                     "order by strategy, iteration")
    assert [(r[0], r[1], r[2]) for r in rows] == [(s, "random", k) for s in sorted(STRATEGIES) for k in (1, 2)]
    for r in rows:
        assert r[3] == 6 and r[5] <= r[4] <= r[6] and r[7] == "toy"
    # held-out prompts only, each judged in both orders
    held_out = {x[0] for x in query(ws, "select prompt from pairs where split = 'test'")}
    # (identical responses of two comparisons share their stored verdicts, so count by presentation)
    assert query(ws, "select count(*) from (select prompt_hash, a_hash, b_hash from judgments group by all "
                     "having count(distinct \"order\") <> 2)")[0][0] == 0
    prompts = {x[0] for x in query(ws, "select distinct p.prompt from generations g join pairs p using (pair_id) "
                                       "where g.branch like 'eval/%'")}
    assert prompts <= held_out
    ev = json.loads(query(ws, "select outputs from runs where step = 'eval' and iteration = 2 "
                              "and status = 'done'")[0][0])
    assert set(ev["winrates"]) == set(STRATEGIES) and set(ev["rm_policy_accuracy"]) == set(STRATEGIES) | {"random"}
    r = cli("report", "winrate", "--run", "toy", "-w", ws)
    assert r.exit_code == 0, r.output
    assert "iteration 1 win % [95% CI]" in r.stdout and "overall" in r.stdout and "positive" in r.stdout
    assert "distinguishable from the baseline" in r.stderr
