"""The steps of `curate run`: each calls one library function with the config's settings and returns the outputs
its `runs` row records (what it made, counts, and the throughput the cost estimate learns from).

Values reach the library as typed arguments (split=, limit=, a config dataclass); the only SQL text passed on is
the user's own [data] where.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable

from ..errors import CurateError
from ..workspace import Workspace
from .config import RunConfig
from .layout import Layout

PPO_MODE = "[ppo] reward_mode"  # the run's reward models are read in the mode its PPO uses


class Steps:
    def __init__(self, cfg: RunConfig, ws: Workspace, layout: Layout, *, quiet: bool,
                 echo: Callable[[str], None], redo: Callable[[], bool]):
        self.cfg, self.ws, self.at, self.quiet, self.echo = cfg, ws, layout, quiet, echo
        self.redo = redo  # whether the step running now replaces a finished one

    def _embedder(self) -> str | None:
        return None if self.cfg.embed.model == "default" else self.cfg.embed.model

    def _prompt_selection(self) -> dict:
        g, d = self.cfg.generate, self.cfg.data
        return {"split": d.split, "where": d.where or None, "limit": g.limit or None,
                "fraction": None if g.sample_fraction == 1 else g.sample_fraction}

    # -- data ---------------------------------------------------------------------------------------------
    def ingest(self) -> dict:
        from ..demo_data import demo_sources
        from ..ingest import ingest

        groups: list[tuple[list[str], dict]] = []
        for src in self.cfg.data.sources:
            if src == "demo":
                groups.append(([str(p) for p in demo_sources()], {}))
            elif isinstance(src, dict):
                groups.append(([src["path"]], {k: src.get(k) for k in ("subset", "split", "revision")}))
            else:
                groups.append(([src], {}))
        added = read = rejected = 0
        ids = []
        for inputs, opts in groups:
            r = ingest(self.ws, inputs, sft_fraction=self.cfg.data.sft_fraction, seed=self.cfg.run.seed, **opts)
            added, read, rejected = added + r.added, read + r.read, rejected + sum(r.rejected.values())
            ids.append(r.ingest_id)
        with self.ws.connect() as con:
            roles = dict(con.execute("select role, count(*) from pairs where split = $s group by 1",
                                     {"s": self.cfg.data.split}).fetchall())
        if not roles.get("pref"):
            raise CurateError(f"No pref pairs with split {self.cfg.data.split!r} after ingest: check [data] sources "
                              "and split.")
        return {"read": read, "added": added, "rejected": rejected, "ingest_ids": ids, "pairs_by_role": roles}

    # -- the policy ---------------------------------------------------------------------------------------
    def sft_given(self) -> dict:
        from ..models import resolve_policy

        ref = resolve_policy(self.cfg.sft.checkpoint)
        return {"checkpoint": str(ref.folder), "policy_id": ref.model_id, "trained": False}

    def sft(self) -> dict:
        from ..models import resolve_policy
        from ..train import sft

        c = self.cfg.sft
        base = resolve_policy(c.model)  # a Hub id or the packaged default -> a local folder
        r = sft.train_sft(dataclasses.replace(
            c, model=str(base.folder), output=str(self.at.sft_path()), workspace=str(self.ws.root),
            split=self.cfg.data.split, where=None, seed=self.cfg.run.seed, overwrite=True, quiet=self.quiet))
        return {"checkpoint": str(r.output), "base": base.model_id, "rows": r.rows, "truncated": r.truncated,
                "train_loss": r.metrics["train_loss"], "steps": r.metrics["steps"],
                "throughput": {"sft_rows_per_s": r.metrics["steps"] * c.batch_size / max(r.seconds, 1e-9)}}

    def generate(self, strategy: str | None, k: int) -> dict:
        from ..generate import generate
        from ..progress import generation_progress

        g = self.cfg.generate
        params = dataclasses.replace(g.sampling(), seed=self.cfg.run.seed + k)
        policy = self.at.policy_for(strategy, k)
        sel = self._prompt_selection()
        with generation_progress(self.quiet) as progress:
            r = generate(self.ws, str(policy), iteration=k, branch=self.at.sampling_branch(strategy), params=params,
                         backend=g.backend, overwrite=self.redo(),  # a finished step run again: samples replaced
                         dtype=g.dtype, batch_size=g.batch_size, where=sel["where"], split=sel["split"],
                         limit=sel["limit"], sample_fraction=sel["fraction"], progress=progress,
                         vllm_python=g.vllm_python or None, vllm_url=g.vllm_url or None, vllm_args=g.vllm_args,
                         status=self.echo, engine=self.cfg.engine)
        out = {"policy": r.policy, "policy_path": str(policy), "prompts": r.prompts, "rows": r.rows,
               "generated_prompts": r.generated_prompts, "new_tokens": r.new_tokens, "truncated": r.truncated}
        if r.generated_prompts and r.generate_seconds:
            out["throughput"] = {"generate_tokens_per_s": r.new_tokens / r.generate_seconds}
        return out

    # -- selection ----------------------------------------------------------------------------------------
    def embed(self) -> dict:
        from ..embedding import embed
        from ..progress import count_progress

        e = self.cfg.embed
        with count_progress(self.quiet, "embedding", "texts") as progress:
            r = embed(self.ws, self._embedder(), backend=e.backend, batch_size=e.batch_size, progress=progress,
                      engine=self.cfg.engine)
        out = {"model_id": r.model_id, "distinct_texts": r.distinct_texts, "cached": r.cached, "embedded": r.embedded}
        if r.embedded and r.seconds:
            out["throughput"] = {"embed_texts_per_s": r.embedded / r.seconds}
        return out

    def score(self, branch: str, k: int) -> dict:
        from ..score import score

        r = score(self.ws, k, branch, self._embedder())
        return {"branch": branch, "model_id": r.model_id, "pairs": r.pairs, "samples": r.samples}

    def filter(self, strategy: str, k: int) -> dict:
        from .. import strategies
        from ..filters import run_filter

        f = self.cfg.filter
        # a baseline draws anew each iteration (seed + k - 1) from the pairs scored in iteration 1
        r = run_filter(self.ws, strategy, eps=f.eps, size=f.size, iteration=self.at.data_iteration(strategy, k),
                       branch=self.at.data_branch(strategy, k), aggregate=f.aggregate,
                       distinct=f.distinct and strategies.get(strategy).halves, seed=self.cfg.run.seed + k - 1,
                       name=self.at.subset_name(strategy, k))
        if r.rows == 0:
            raise CurateError(f"The {strategy} filter of iteration {k} kept no pairs at eps {f.eps}: no pair is "
                              f"similar enough to the policy's responses. Raise [filter] eps (the floor is 1 - eps).")
        if r.rows < f.size:
            self.echo(f"      {strategy}: {r.rows} pairs pass the floor 1 - {f.eps}, fewer than size {f.size}")
        return {"subset": r.name, "subset_id": r.subset_id, "rows": r.rows, "distinct_pairs": r.distinct_pairs,
                "manifest": r.manifest}

    # -- training -----------------------------------------------------------------------------------------
    def rm(self, strategy: str, k: int) -> dict:
        from ..train import evaluate, rm

        c = self.cfg.rm
        config = dataclasses.replace(c, base=str(self.at.rm_base(strategy, k)),
                                     output=str(self.at.rm_path(strategy, k)), subset=self.at.subset_name(strategy, k),
                                     workspace=str(self.ws.root), data=None,
                                     seed=self.cfg.run.seed, overwrite=True, quiet=self.quiet,
                                     # MetaRM's shifted samples: the policy's own, those this iteration's data came from
                                     shifted_generations=f"{self.at.data_branch(strategy, k)}:"
                                     f"{self.at.data_iteration(strategy, k)}" if c.meta else None)
        r = rm.train_rm(config)
        out = {"checkpoint": str(r.output), "subset": config.subset, "trained_rows": r.trained_rows,
               "dropped_long": r.dropped_long, "train_loss": r.metrics["train_loss"],
               "throughput": {"rm_pairs_per_s": r.trained_rows * c.epochs / max(r.seconds, 1e-9)}}
        if self.cfg.data.eval_split:
            ev = evaluate.evaluate_rm(r.output, str(self.ws.root), split=self.cfg.data.eval_split,
                                      limit=c.eval_pairs or None, max_length=c.max_length,
                                      n_boot=self.cfg.eval.bootstrap, seed=self.cfg.run.seed,
                                      reward_mode=self.cfg.ppo.reward_mode, mode_option=PPO_MODE)
            out.update(eval_pairs=ev["pairs"], eval_accuracy=ev["accuracy"], eval_margin=ev["mean_margin"],
                       eval_ci=[ev["ci_low"], ev["ci_high"]], eval_wilson=[ev["wilson_low"], ev["wilson_high"]],
                       eval_by_length={k: v["accuracy"] for k, v in ev["by_length"].items()},
                       eval_reward_mode=ev["reward_mode"])
        return out

    def ppo(self, strategy: str, k: int) -> dict:
        from ..generate import select_prompts
        from ..train import ppo

        p, sel = self.cfg.ppo, self._prompt_selection()
        prompts = [x.text for x in select_prompts(self.ws, sel["where"], sel["limit"], sel["fraction"],
                                                  self.cfg.run.seed, sel["split"])]
        out_dir = self.at.ppo_path(strategy, k)
        if self.redo():  # a finished step run again starts over (an interrupted one resumes from its checkpoint)
            shutil.rmtree(out_dir, ignore_errors=True)
        config = dataclasses.replace(p, policy=str(self.at.policy_for(strategy, k)),
                                     reward=str(self.at.rm_path(strategy, k)), reference=str(self.at.sft_path()),
                                     output=str(out_dir), seed=self.cfg.run.seed + k, quiet=self.quiet,
                                     final_optimizer=False)  # a finished step is redone from scratch, never extended
        t0 = time.perf_counter()
        r = ppo.train_ppo(config, prompts=prompts)
        last = r.history[-1] if r.history else {}
        trained = [h for h in r.history if "seconds" in h]
        per_step = sum(h["seconds"] for h in trained) / len(trained) if trained else None
        out = {"checkpoint": str(r.output), "steps": r.step, "prompts": len(prompts),
               "reward_last": last.get("reward"), "reward_mode": last.get("reward_mode"), "kl_last": last.get("kl"),
               "seconds_total": round(time.perf_counter() - t0, 3)}
        if per_step:
            out["throughput"] = {"ppo_prompts_per_s": p.batch_size / per_step}
        return out

    # -- evaluation ---------------------------------------------------------------------------------------
    def evaluate(self, k: int) -> dict:
        """Each strategy's policy of iteration k against the baseline's (one judge, loaded once; responses cached
        per policy), then each reward model on the held-out pairs its filter selects for its policy."""
        from ..generate import GenerateParams
        from ..judge.prompts import eval_prompts
        from ..judge.template import load_template
        from ..judge.winrate import compare, eval_branch, make_judge

        cfg, at, e = self.cfg, self.at, self.cfg.eval
        g = cfg.generate
        params = GenerateParams(top_k=g.top_k, top_p=g.top_p, temperature=g.temperature,
                                max_new_tokens=e.max_new_tokens, seed=cfg.run.seed + k, chat_template=g.chat_template)
        prompts = eval_prompts(self.ws, split=cfg.data.eval_split, limit=e.prompts, seed=cfg.run.seed)
        template = load_template(e.template or None)
        judge = make_judge(e.judge, template, base_url=e.base_url or None, api_key_env=e.api_key_env,
                           concurrency=e.concurrency, batch_size=e.batch_size,
                           reward_mode=e.judge_reward_mode(cfg.ppo.reward_mode), mode_option="[eval] reward_mode")
        base = cfg.run.baseline
        out: dict = {"judge_id": judge.judge_id, "prompts": len(prompts), "winrates": {}, "rm_policy_accuracy": {}}
        for s in [x for x in cfg.run.strategies if not at.is_baseline(x)]:
            c = compare(self.ws, str(at.ppo_path(s, k)), str(at.ppo_path(base, k)), judge, template=e.template or None,
                        prompts=None, split=cfg.data.eval_split, limit=e.prompts, seed=cfg.run.seed, params=params,
                        n_boot=e.bootstrap, name=at.comparison_name(s, k), quiet=self.quiet, echo=self.echo,
                        run={"run_id": at.run_id, "strategy": s, "baseline": base, "iteration": k})
            st = c.stats
            out["winrates"][s] = {"win_rate": st.win_rate, "ci": [st.ci_low, st.ci_high], "judged": st.judged,
                                  "ties": st.ties, "invalid": st.invalid, "lc_win_rate": st.lc_win_rate,
                                  "significant": st.significant}
            self.echo(f"      {s} vs {base}: {st.describe()}")
        out["rm_policy_accuracy"] = self._policy_accuracy(k, params, eval_branch)
        return out

    def _policy_accuracy(self, k: int, params, eval_branch) -> dict:
        """Each RM on the held-out pairs its strategy's filter picks from its policy's eval responses (FRFT's claim
        is about the policy's distribution); a baseline's RM on the pairs the first strategy's filter picks for it."""
        from ..embedding import embed
        from ..filters import run_filter
        from ..models import resolve_policy
        from ..score import score
        from ..train.evaluate import evaluate_rm

        cfg, at = self.cfg, self.at
        embed(self.ws, self._embedder(), backend=cfg.embed.backend, batch_size=cfg.embed.batch_size)
        out = {}
        for s in cfg.branches:
            branch = eval_branch(resolve_policy(str(at.ppo_path(s, k))).model_id, params)
            r = score(self.ws, 1, branch, self._embedder())
            frft = [x for x in cfg.run.strategies if not at.is_baseline(x)]
            if at.is_baseline(s) and not frft:
                continue
            strategy = frft[0] if at.is_baseline(s) else s
            f = run_filter(self.ws, strategy, eps=cfg.filter.eps, size=cfg.filter.size, iteration=1, branch=branch,
                           aggregate=cfg.filter.aggregate, name=at.heldout_subset(s, k))
            if not f.rows:
                out[s] = {"pairs": 0, "accuracy": None, "scored": r.pairs, "filter": strategy}
                continue
            ev = evaluate_rm(at.rm_path(s, k), str(self.ws.root), subset=f.name, max_length=cfg.rm.max_length,
                             n_boot=cfg.eval.bootstrap, seed=cfg.run.seed, reward_mode=cfg.ppo.reward_mode,
                             mode_option=PPO_MODE)
            out[s] = {"pairs": ev["pairs"], "accuracy": ev["accuracy"], "ci": [ev["ci_low"], ev["ci_high"]],
                      "subset": f.name, "filter": strategy, "reward_mode": ev["reward_mode"]}
        return out

    # -- the report ---------------------------------------------------------------------------------------
    def report(self) -> dict:
        from .. import report
        from ..atomic import staged_file

        cfg, at = self.cfg, self.at
        out: dict = {}
        folder = self.ws.reports_dir() / at.run_id
        folder.mkdir(parents=True, exist_ok=True)
        names = [at.subset_name(s, k) for k in range(1, cfg.run.alpha + 1) for s in cfg.run.strategies]
        if cfg.run.alpha >= 2:
            df = report.intersect(self.ws, strategies=cfg.run.strategies, names=names)
            with staged_file(folder / "intersect.csv") as tmp:
                df.write_csv(tmp)
            out["intersect"] = str(folder / "intersect.csv")
            out["intersect_rows"] = df.to_dicts()
            out["intersect_png"] = str(report.intersect_heatmap(df, folder / "intersect.png"))
        branches = [at.shared] + [at.branch(s) for s in cfg.run.strategies]
        c = report.cdf(self.ws, branch=branches, eps=cfg.filter.eps, aggregate=cfg.filter.aggregate,
                       output=folder / "cdf.png")
        out["cdf"] = str(c.path)
        out["html"] = str(report.html_report(self.ws, folder / "report.html", eps=cfg.filter.eps))
        out["subsets"] = names
        return out
