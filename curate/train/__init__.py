"""Thin trainers on curate's data: SFT (TRL SFTTrainer), reward model (TRL RewardTrainer), PPO (our own loop).

Each trainer reads top to bottom (config, data, model, train, save) and is configured by one dataclass whose
fields carry their defaults, paper sources and help: `curate train sft|rm|ppo`, `python -m curate.train.<name>`
and `curate run`'s [sft], [rm] and [ppo] sections are all built from it (curate.settings).
"""
