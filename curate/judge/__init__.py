"""LLM, local-LM and reward-model judges of `curate eval winrate`, the judgments they store, and the statistics
of a comparison (curate.judge.stats)."""
