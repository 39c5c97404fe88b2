"""The trainers under `accelerate launch` on two CPU processes (gloo, configs/accelerate/cpu_2proc.yaml), run for
real in a subprocess on tiny models: the output loads, its record says two processes, the step and row counts
follow the two-process arithmetic, and PPO on two processes equals PPO on one with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import write_jsonl
from .test_ppo import PROMPTS, policy_dir, reward_dir  # noqa: F401  (module fixtures: the tiny policy and RM)
from .test_rm import CORPUS, good_bad_rows, tiny_lm

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "accelerate"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def launch(module: str, *args, config: str = "cpu_2proc.yaml", cwd: Path) -> subprocess.CompletedProcess:
    """`accelerate launch --config_file configs/accelerate/<config> -m <module> <args>`, one thread per process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / config), "-m", module,
           *map(str, args)]
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{' '.join(cmd)}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-6000:]}"
    return r


def siblings(folder: Path) -> list[str]:
    """What lies beside `folder`: a staging or an aside folder left behind would show here."""
    return sorted(p.name for p in folder.parent.iterdir())


# -- PPO ------------------------------------------------------------------------------------------------
# top_k 1 makes the rollout deterministic and one minibatch per batch makes the update independent of the
# per-process minibatch order, so two processes with --batch-size 2 must train what one with --batch-size 4 does:
# the same global prompts (one seeded stream, sliced per process), advantages whitened over the global batch,
# losses averaged over the global tokens
PPO_ARGS = ["--max-new-tokens", "4", "--top-k", "1", "--ppo-epochs", "2", "--save-every", "1", "--quiet",
            "--actor-lr", "1e-3", "--critic-lr", "1e-3"]


def log_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def close_rows(a: list[dict], b: list[dict]) -> None:
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b):
        for k in ("reward", "kl", "response_length", "entropy", "vf_loss", "pg_loss", "approx_kl", "clipfrac"):
            assert x[k] == pytest.approx(y[k], rel=1e-3, abs=2e-6), (x["step"], k, x[k], y[k])


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


@pytest.fixture(scope="module")
def ppo_runs(policy_dir, reward_dir, tmp_path_factory):  # noqa: F811
    """Two steps on 2 processes (--batch-size 2), then a third resumed from its checkpoint; and the same on one
    process in this one (--batch-size 4)."""
    from curate.train.ppo import main

    tmp = tmp_path_factory.mktemp("ppo")
    prompts = tmp / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    common = ["--policy", policy_dir, "--reward", reward_dir, "--prompts", prompts, *PPO_ARGS]
    two, one = tmp / "two" / "ppo", tmp / "one" / "ppo"
    first = launch("curate.train.ppo", *common, "--output", two, "--steps", 2, "--batch-size", 2,
                   "--mini-batch-size", 2, cwd=tmp)
    two_at_2 = {"log": log_rows(two), "weights": weights(two), "record": json.loads((two / "curate_train.json")
                                                                                   .read_text())}
    resumed = launch("curate.train.ppo", *common, "--output", two, "--steps", 3, "--batch-size", 2,
                     "--mini-batch-size", 2, cwd=tmp)
    for steps in (2, 3):
        assert main([*map(str, common), "--output", str(one), "--steps", str(steps), "--batch-size", "4",
                     "--mini-batch-size", "4"]) == 0
        if steps == 2:
            one_at_2 = {"log": log_rows(one), "weights": weights(one)}
    return {"two": two, "one": one, "two_at_2": two_at_2, "one_at_2": one_at_2, "stdout": first.stdout,
            "resumed_stdout": resumed.stdout, "prompts": prompts, "common": common}


def test_ppo_on_two_processes_records_them_and_logs_once(ppo_runs):
    record = ppo_runs["two_at_2"]["record"]
    assert record["processes"] == 2 and record["global_batch_size"] == 4
    assert record["config"]["batch_size"] == 2 and record["resumed_from_step"] is None
    # the main process alone writes: one log row and one stdout line per step, not one per process
    assert [r["step"] for r in ppo_runs["two_at_2"]["log"]] == [1, 2]
    assert [json.loads(line)["step"] for line in ppo_runs["stdout"].splitlines()] == [1, 2]
    assert siblings(ppo_runs["two"]) == ["ppo"]
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(ppo_runs["two"]).config.hidden_size == 32


def test_ppo_on_two_processes_equals_one_process_with_the_same_global_batch(ppo_runs):
    a, b = ppo_runs["two_at_2"], ppo_runs["one_at_2"]
    close_rows(a["log"], b["log"])
    assert a["log"][-1]["kl"] > 0  # the policy moved, so equal weights below say the updates were equal
    for name, w in a["weights"].items():
        assert torch.allclose(w, b["weights"][name], rtol=1e-4, atol=1e-6), name
    before = weights(Path(ppo_runs["common"][1]))  # the initial policy
    assert any(not torch.equal(w, before[name]) for name, w in a["weights"].items())


def test_ppo_resumes_on_two_processes(ppo_runs):
    record = json.loads((ppo_runs["two"] / "curate_train.json").read_text())
    assert record["resumed_from_step"] == 2
    assert [json.loads(line)["step"] for line in ppo_runs["resumed_stdout"].splitlines()] == [3]
    close_rows(log_rows(ppo_runs["two"]), log_rows(ppo_runs["one"]))  # steps 1, 2 kept, 3 trained alike
    assert json.loads((ppo_runs["two"] / "trainer_state.json").read_text())["step"] == 3


def test_ppo_refuses_to_resume_on_another_number_of_processes(ppo_runs, capsys):
    from curate.train.ppo import main

    rc = main([*map(str, ppo_runs["common"]), "--output", str(ppo_runs["two"]), "--steps", "4", "--batch-size", "4",
               "--mini-batch-size", "4"])
    assert rc == 1
    assert "was trained on 2 process(es); resume it on as many" in capsys.readouterr().err


# -- reward model and SFT ----------------------------------------------------------------------------------
def pairs_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", [
        {"prompt": f"Human: question {i} about topic {i % 7} ? Assistant:", "chosen": f" answer {i % 5} is good",
         "rejected": f" answer {i % 5} is bad"} for i in range(10)])


def test_reward_model_on_two_processes(tmp_path):
    base = tiny_lm(tmp_path / "base", CORPUS)
    data = pairs_file(tmp_path)
    out = tmp_path / "out" / "rm"
    launch("curate.train.rm", "--base", base, "--data", data, "--output", out, "--batch-size", 2, "--epochs", 1,
           "--max-length", 64, "--lr", 1e-3, "--quiet", cwd=tmp_path)
    record = json.loads((out / "curate_train.json").read_text())
    # 10 rows in batches of 2 are 5 batches, dealt to 2 processes in turn: 3 steps each, the last batch of process
    # 1 completed with the first rows (accelerate's even_batches): 3 steps x 2 processes x 2 rows seen
    assert (record["processes"], record["global_batch_size"]) == (2, 4)
    assert record["metrics"]["steps"] == 3 and record["metrics"]["rows_seen"] == 12
    assert record["counts"]["trained_rows"] == 10
    assert siblings(out) == ["rm"]
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert model(**tok("question 1 about topic 1 ? answer 1 is good", return_tensors="pt")).logits.shape == (1, 1)


def test_ava_reward_model_on_two_processes(tmp_path):
    """AVA reads the per-token outputs through the data-parallel wrapper's forward (the backbone called alone
    failed on the wrapper, and would not have averaged the gradients) and trains a Q head outside it."""
    base = tiny_lm(tmp_path / "base", CORPUS)
    out = tmp_path / "out" / "rm"
    launch("curate.train.rm", "--base", base, "--data", pairs_file(tmp_path), "--output", out, "--batch-size", 2,
           "--epochs", 1, "--max-length", 64, "--objective", "ava", "--margin", "none", "--quiet", cwd=tmp_path)
    record = json.loads((out / "curate_train.json").read_text())
    assert record["processes"] == 2 and record["objective"]["name"] == "ava" and record["metrics"]["steps"] == 3
    from transformers import AutoModelForSequenceClassification

    assert AutoModelForSequenceClassification.from_pretrained(out).config.num_labels == 2  # mean, log-scale


def test_sft_on_two_processes(cli, tmp_path):
    src = write_jsonl(tmp_path / "data" / "harmless-base" / "train.jsonl", good_bad_rows(12))
    ws = tmp_path / "ws"
    assert cli("ingest", src, "-w", ws, "-q", "--sft-fraction", "1").exit_code == 0
    base = tiny_lm(tmp_path / "base", CORPUS)
    out = tmp_path / "out" / "sft"
    launch("curate.train.sft", "--model", base, "--output", out, "-w", ws, "--batch-size", 4, "--epochs", 1,
           "--max-length", 64, "--lr", 1e-3, "--quiet", cwd=tmp_path)
    record = json.loads((out / "curate_train.json").read_text())
    # 12 rows in batches of 4: 3 batches, 2 steps on 2 processes (the fourth batch the first 4 rows again)
    assert (record["processes"], record["global_batch_size"]) == (2, 8)
    assert record["metrics"]["steps"] == 2 and record["counts"]["rows_seen"] == 16 and record["counts"]["rows"] == 12
    assert siblings(out) == ["sft"]
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers == 1


def test_step_and_row_arithmetic():
    from curate.train.checkpoint import rows_seen, steps_per_epoch

    assert [steps_per_epoch(10, 2, p) for p in (1, 2, 3)] == [5, 3, 2]
    assert rows_seen(10, 4, 4) == 10 + 4  # one process: an epoch of 10 in 3 steps (the last batch short), then 4
    assert rows_seen(10, 4, 2, processes=2) == 16


# -- the configs ----------------------------------------------------------------------------------------
def test_configs_parse_with_accelerates_loader_and_say_what_they_claim():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    configs = {p.name: load_config_from_file(str(p)) for p in CONFIGS.glob("*.yaml")}
    assert set(configs) == {"cpu_2proc.yaml", "multi_gpu.yaml", "zero2.yaml", "zero3.yaml"}
    cpu = configs["cpu_2proc.yaml"]
    assert (cpu.distributed_type, cpu.num_processes, cpu.num_machines) == (DistributedType.MULTI_GPU, 2, 1)
    assert cpu.main_process_port == 0  # a free port: parallel runs do not collide
    assert configs["multi_gpu.yaml"].distributed_type == DistributedType.MULTI_GPU
    for name, stage in (("zero2.yaml", 2), ("zero3.yaml", 3)):
        c = configs[name]
        # precision is the trainer's (its "auto" in the JSON): a bf16 fixed by accelerate would contradict sft's
        # float32 and transformers would refuse to start
        assert c.distributed_type == DistributedType.DEEPSPEED and c.mixed_precision in (None, "no")
        ds = json.loads((CONFIGS.parent.parent / c.deepspeed_config["deepspeed_config_file"]).read_text())
        assert ds["zero_optimization"]["stage"] == stage
        assert ds["bf16"]["enabled"] == ds["fp16"]["enabled"] == "auto"
        assert ds["gradient_accumulation_steps"] == ds["gradient_clipping"] == ds["train_batch_size"] == "auto"
        # transformers' HfTrainerDeepSpeedConfig fills each "auto" from TrainingArguments; a fixed value that differs
        # from the trainer's is refused at start (checked by reading, since deepspeed is not installed here)
        assert ds["train_micro_batch_size_per_gpu"] == ds["zero_optimization"]["reduce_bucket_size"] == "auto"
    zero3 = json.loads((CONFIGS / "ds_zero3.json").read_text())["zero_optimization"]
    assert zero3["stage3_gather_16bit_weights_on_model_save"] is True  # a loadable folder at save


def test_ppo_refuses_deepspeed(policy_dir, tmp_path, monkeypatch):  # noqa: F811
    """accelerate's environment for a DeepSpeed launch, without DeepSpeed: refused before anything loads."""
    from curate.errors import CurateError
    from curate.train.ppo import PPOConfig, train_ppo

    class FakeAccelerator:
        distributed_type = __import__("accelerate").utils.DistributedType.DEEPSPEED
        device, num_processes, process_index = torch.device("cpu"), 1, 0

        def __init__(self, **kwargs):
            pass

    monkeypatch.setattr("accelerate.Accelerator", FakeAccelerator)
    with pytest.raises(CurateError, match="data parallel only .* not DEEPSPEED: launch it with"):
        train_ppo(PPOConfig(policy=str(policy_dir), output=str(tmp_path / "o"), quiet=True), prompts=["a"],
                  reward_fn=lambda p, r: torch.zeros(len(p)))
    assert not (tmp_path / "o").exists()
