"""The TOML config of `curate run`: every setting of an FRFT(alpha) run, checked before any work starts.

    [run]       name, workspace, checkpoints, alpha, strategies, seed
    [data]      sources, sft_fraction, split, eval_split, where
    [sft]       curate.train.sft.SFTConfig's knobs (model, lr, epochs, ...) + checkpoint (a ready SFT model)
    [embed]     curate.embedding.EmbedSettings (model, backend, batch_size)
    [generate]  curate.generate.GenerateSettings (max_new_tokens, top_k, samples, chat_template, batch_size, ...)
    [filter]    curate.filters.FilterSettings (eps, size, aggregate, distinct)
    [rm]        curate.train.rm.RMConfig's knobs (lr, epochs, batch_size, ...) + eval_pairs
    [ppo]       curate.train.ppo.PPOConfig's knobs (steps, batch_size, kl_coef, actor_lr, critic_lr, reward_mode, ...)
    [eval]      the eval step of each iteration: judge, prompts, template, response length, bootstrap, reward_mode
    [engine]    curate.engine.EngineSettings: where embed and generate run (kind = "ray", address, actors, ...);
                not part of the run's config hash: where the work runs does not change its results

The training and sampling sections are the same dataclasses `curate train ...`, `curate generate`, `embed` and
`filter` build their options from (curate.settings), so a default and its paper source are written once. A key
is valid where its field may be set from a config (paths, seeds and outputs are the run's to decide); an unknown
key or a value of the wrong type is an error that names the file, line, section and key, with the valid keys.
Relative paths are relative to the current folder, like the CLI's.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import strategies
from ..embedding import EmbedSettings
from ..engine import EngineSettings
from ..errors import CurateError
from ..filters import FilterSettings
from ..generate import GenerateSettings
from ..settings import coerce, setting, toml_settings, toml_values
from ..train.ppo import PPOConfig
from ..train.rm import RMConfig
from ..train.sft import SFTConfig


@dataclass
class RunSection:
    name: str = ""  # default: the config file's stem
    workspace: str = "workspace"
    checkpoints: str = ""  # default: <workspace>/checkpoints/<name>
    alpha: int = 2  # FRFT iterations
    strategies: list[str] = field(default_factory=strategies.paper_parts)  # the paper's Parts 1-4: RM1..RM4
    # the branch every strategy is compared against (FRFT section 6: vanilla PPO with an RM on random pairs):
    # random or all; "" for none (no eval step either)
    baseline: str = "random"
    seed: int = 0


@dataclass
class DataSection:
    # files, folders, globs or hf:IDs; or tables {path = "hf:Anthropic/hh-rlhf", subset = "harmless-base",
    # split = "train"}; "demo" is the small preference set that ships with curate (curate/demo_data/)
    sources: list = field(default_factory=list)
    sft_fraction: float = 0.5  # the paper splits HH-RLHF in halves: SFT and preference data
    split: str = "train"  # the pairs that are generated for, filtered and trained on
    eval_split: str = "test"  # held-out pairs for the reward models' accuracy ("" for none)
    where: str = ""  # an extra SQL predicate on pairs for the prompts to generate for


@dataclass
class SFTSection(SFTConfig):
    checkpoint: str = setting("", "A ready SFT model (folder, Hub id or smollm2-135m): used as is, no training.")


@dataclass
class GenerateSection(GenerateSettings):
    # the run's default policy is the instruct SmolLM2, which expects its chat template; `curate generate` keeps
    # the raw HH transcript by default (the paper's GPT-2 SFT policy was trained on it)
    chat_template: bool = setting(True, "Format prompts with the policy's chat template.")


@dataclass
class RMSection(RMConfig):
    eval_pairs: int = setting(0, "Held-out pairs to score each reward model on (0: all of [data] eval_split).")


@dataclass
class EvalSection:
    """The eval step of each iteration: every strategy's policy against the baseline's, and every reward model's
    accuracy on the held-out pairs the FRFT filter selects for its policy."""

    judge: str = setting("hf:smollm2-135m", "openai:MODEL, hf:MODEL_OR_FOLDER or rm:FOLDER (as `curate eval "
                         "winrate --judge`).", paper="FRFT paper, section 6: an LLM judge (Gemini 1.5 Pro)")
    base_url: str = setting("", "The openai: judge's endpoint.")
    api_key_env: str = setting("OPENAI_API_KEY", "Environment variable holding the openai: judge's key.")
    concurrency: int = setting(8, "openai: requests in flight.")
    template: str = setting("", "Judge prompt: a built-in name or a file (default frft-appendix-a-corrected).")
    prompts: int = setting(1000, "Held-out prompts ([data] eval_split) each comparison judges, a seeded sample.",
                           paper="FRFT paper, section 6: N = 1,000")
    max_new_tokens: int = setting(128, "Tokens per response of the compared policies.")
    batch_size: int = setting(8, "Judgments (hf, rm) per forward pass.")
    bootstrap: int = setting(1000, "Bootstrap resamples of each interval.")
    reward_mode: str = setting("", "An rm: judge's reward mode if it is an AVA model: final or dense (default: [ppo] "
                               "reward_mode).", choices=("", "final", "dense"))

    def judge_reward_mode(self, ppo_mode: str | None) -> str | None:
        """The reward mode the rm: judge reads (None for other judges): reward_mode, else [ppo]'s."""
        return (self.reward_mode or ppo_mode) if self.judge.startswith("rm:") else None


SECTIONS: dict[str, type] = {
    "run": RunSection, "data": DataSection, "sft": SFTSection, "embed": EmbedSettings, "generate": GenerateSection,
    "filter": FilterSettings, "rm": RMSection, "ppo": PPOConfig, "eval": EvalSection, "engine": EngineSettings,
}
PLACEMENT = ("engine",)  # sections that say where work runs, not what it computes: outside the config hash


@dataclass
class RunConfig:
    run: RunSection
    data: DataSection
    sft: SFTSection
    embed: EmbedSettings
    generate: GenerateSection
    filter: FilterSettings
    rm: RMSection
    ppo: PPOConfig
    eval: EvalSection = field(default_factory=EvalSection)
    engine: EngineSettings = field(default_factory=EngineSettings)
    path: str = ""  # the file it was read from

    @property
    def branches(self) -> list[str]:
        """The strategies that get a branch: [run] strategies, then the baseline (once)."""
        b = self.run.baseline
        return self.run.strategies + ([b] if b and b not in self.run.strategies else [])

    def to_dict(self) -> dict:
        """The settable values of every section (what the run's hash and a resumed run's diff compare)."""
        return {name: toml_values(getattr(self, name)) for name in SECTIONS if name not in PLACEMENT}

    @staticmethod
    def defaults() -> dict:
        """to_dict() of a config that sets nothing: what a key missing from an older run's record meant."""
        return {name: toml_values(cls()) for name, cls in SECTIONS.items() if name not in PLACEMENT}

    @property
    def sha256(self) -> str:
        """Hash of the resolved settings (defaults filled in): a run resumes only with the same one."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    @property
    def checkpoints(self) -> Path:
        return Path(self.run.checkpoints) if self.run.checkpoints else \
            Path(self.run.workspace) / "checkpoints" / self.run.name


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _locator(path: str, text: str | None) -> Callable[[str, str | None], str]:
    """where(section, key) -> "file, line N" (the line of `key =` in [section], or of the [section] header)."""
    lines = (text or "").splitlines()

    def where(section: str, key: str | None = None) -> str:
        current = None
        for n, line in enumerate(lines, 1):
            stripped = line.strip()
            head = re.match(r"^\[\s*([A-Za-z0-9_-]+)\s*\]", stripped)
            if head:
                current = head.group(1)
                if key is None and current == section:
                    return f"{path}, line {n}"
            elif key is not None and current == section and re.match(rf"^{re.escape(key)}\s*=", stripped):
                return f"{path}, line {n}"
        return path

    return where


def parse(doc: dict, path: str = "<config>", text: str | None = None) -> RunConfig:
    """Validate a parsed TOML document into a RunConfig (errors name the file, line, section and key)."""
    where = _locator(path, text)
    unknown = [k for k in doc if k not in SECTIONS]
    if unknown:
        valid = list(SECTIONS)
        raise CurateError(f"{where(unknown[0])}: unknown section [{unknown[0]}]{_suggest(unknown[0], valid)}; the "
                          f"sections are {', '.join(f'[{s}]' for s in valid)}.")
    sections = {}
    for name, cls in SECTIONS.items():
        table = doc.get(name, {})
        if not isinstance(table, dict):
            raise CurateError(f"{where(name)}: `{name}` must be a [{name}] table.")
        fields = toml_settings(cls)
        for key in table:
            if key not in fields:
                raise CurateError(f"{where(name, key)}: unknown key {key!r} in [{name}]{_suggest(key, list(fields))}; "
                                  f"valid keys: {', '.join(fields)}.")
        values = {k: coerce(fields[k], v, f"{where(name, k)}: [{name}] {k}") for k, v in table.items()}
        sections[name] = cls(**values)
    cfg = RunConfig(**sections, path=path)
    if not cfg.run.name:
        cfg.run.name = Path(path).stem if path != "<config>" else "run"
    _check_values(cfg, where)
    return cfg


def _check_values(cfg: RunConfig, locate: Callable[[str, str | None], str]) -> None:
    def bad(where: str, msg: str) -> CurateError:  # where: "[section] key" or "[section] key[i]"
        section, key = re.match(r"\[(\w+)\] (\w+)", where).groups()
        return CurateError(f"{locate(section, key)}: {where} {msg}")

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", cfg.run.name):
        raise bad("[run] name", f"{cfg.run.name!r} must be letters, digits, '.', '_' or '-' (it names branches, "
                  "subsets and checkpoint folders).")
    if cfg.run.name == "main":
        raise bad("[run] name", "cannot be 'main': that is the branch of the plain commands (curate generate, "
                  "score, filter); pick another name.")
    if cfg.run.alpha < 1:
        raise bad("[run] alpha", f"must be at least 1 (FRFT iterations); got {cfg.run.alpha}.")
    valid = strategies.branch_strategies()  # clean and flip read `strength`, which a run does not compute
    if not cfg.run.strategies:
        raise bad("[run] strategies", f"is empty: list one or more of {', '.join(valid)}.")
    for s in cfg.run.strategies:
        if s not in valid:
            raise bad("[run] strategies", f"has {s!r}{_suggest(s, valid)}; valid: {', '.join(valid)}.")
    if len(set(cfg.run.strategies)) != len(cfg.run.strategies):
        raise bad("[run] strategies", "lists a strategy twice (each strategy is one branch).")
    if cfg.run.baseline and cfg.run.baseline not in strategies.baselines():
        raise bad("[run] baseline", f"is {cfg.run.baseline!r}; valid: {', '.join(strategies.baselines())}, or \"\" "
                  "for none.")
    if cfg.run.baseline and cfg.run.baseline in cfg.run.strategies:
        raise bad("[run] baseline", f"{cfg.run.baseline!r} is in [run] strategies too: list it in one place.")
    if cfg.run.baseline and not cfg.data.eval_split:
        raise bad("[run] baseline", "needs held-out prompts to compare the policies on: set [data] eval_split.")
    if cfg.eval.prompts < 1:
        raise bad("[eval] prompts", f"must be at least 1; got {cfg.eval.prompts}.")
    if cfg.eval.bootstrap < 1:
        raise bad("[eval] bootstrap", f"must be at least 1 (resamples of each interval); got {cfg.eval.bootstrap}.")
    if not cfg.data.sources:
        raise bad("[data] sources", "is missing: list the preference files, e.g. sources = [\"demo\"] or "
                  "[\"hf:Anthropic/hh-rlhf\"].")
    for i, src in enumerate(cfg.data.sources):
        if isinstance(src, dict):
            extra = set(src) - {"path", "subset", "split", "revision"}
            if "path" not in src or extra:
                raise bad(f"[data] sources[{i}]", "must be a string or a table with `path` (and optionally subset, "
                          f"split, revision); got {src!r}.")
        elif not isinstance(src, str):
            raise bad(f"[data] sources[{i}]", f"must be a path, hf:ID or \"demo\"; got {src!r}.")
    if not 0 <= cfg.data.sft_fraction < 1:
        raise bad("[data] sft_fraction", f"must be in [0, 1); got {cfg.data.sft_fraction}.")
    if not 0 < cfg.filter.eps <= 2:
        raise bad("[filter] eps", f"must be in (0, 2]; got {cfg.filter.eps}.")
    for where, value in (("[filter] size", cfg.filter.size), ("[rm] batch_size", cfg.rm.batch_size),
                         ("[ppo] steps", cfg.ppo.steps), ("[ppo] batch_size", cfg.ppo.batch_size),
                         ("[generate] max_new_tokens", cfg.generate.max_new_tokens),
                         ("[generate] samples", cfg.generate.samples), ("[sft] batch_size", cfg.sft.batch_size)):
        if value < 1:
            raise bad(where, f"must be at least 1; got {value}.")
    if cfg.ppo.batch_size % cfg.ppo.mini_batch_size:
        raise bad("[ppo] batch_size", f"{cfg.ppo.batch_size} must be a multiple of mini_batch_size "
                  f"{cfg.ppo.mini_batch_size}.")
    # [rm] objective comes with issue #17's AVA trainer; until then every reward model is Bradley-Terry
    objective = cfg.rm.objective
    if objective == "ava" and not cfg.ppo.reward_mode:
        raise bad("[ppo] reward_mode", "is missing: [rm] objective = \"ava\" trains reward models with a Gaussian "
                  "reward per token, so say how PPO and the reward models' evaluation read them: reward_mode = "
                  "\"final\" (the mean at the last token) or \"dense\" (the mean at every response token).")
    if objective != "ava" and cfg.ppo.reward_mode == "dense":
        raise bad("[ppo] reward_mode", f"\"dense\" needs per-token rewards, and [rm] objective {objective!r} gives one "
                  "per text: set [rm] objective = \"ava\", or leave reward_mode out.")
    if not 0 <= cfg.rm.label_smoothing < 0.5:
        raise bad("[rm] label_smoothing", f"must be in [0, 0.5); got {cfg.rm.label_smoothing}.")
    if not 0 < cfg.generate.sample_fraction <= 1:
        raise bad("[generate] sample_fraction", f"must be in (0, 1]; got {cfg.generate.sample_fraction}.")
    if cfg.rm.meta and cfg.generate.samples < 2:
        raise bad("[rm] meta", "compares the policy's responses to one prompt (MetaRM, eq. 11), and the run samples "
                  f"[generate] samples = {cfg.generate.samples} per prompt: set it to 2 or more.")
    from dataclasses import replace

    from ..train.rm_trainer import check_options

    try:  # an objective's option without its objective; the run names the shifted generations itself
        check_options(replace(cfg.rm, shifted_generations="it1" if cfg.rm.meta else None))
    except CurateError as e:
        raise bad("[rm] objective", f"settings: {e}") from None


def load(path: str | os.PathLike) -> RunConfig:
    p = Path(path)
    if not p.is_file():
        raise CurateError(f"--config {p}: no such file. Examples ship in configs/ (demo.toml, frft-hh.toml).")
    text = p.read_text(encoding="utf-8")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise CurateError(f"{p}: not valid TOML: {e}.") from None
    return parse(doc, str(p), text)
