"""Thin trainers (SFT, reward model, PPO) that read subsets from a curate workspace."""
