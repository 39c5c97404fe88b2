"""What an export holds: its columns (name, type, meaning) and the names of its files and metadata keys.

Kept apart from the package's __init__ so that the card, the provenance record and the Hub push can read
them without importing the package that imports them.
"""

from __future__ import annotations

DATA_FILE = "data/train-00000-of-00001.parquet"
CARD_FILE = "README.md"
PROVENANCE_FILE = "curate_provenance.json"
PROVENANCE_KEY = b"curate_provenance"  # parquet schema metadata key
PROVENANCE_FORMAT = "curate-export/1"
# With a margin (`curate export --margin strength`: max(mean strength, 0) * scale, or a pair_id -> margin frame)
# the export gains this column, which RewardTrainer reads as the margin of its loss (trl.RewardTrainer.compute_loss).
MARGIN_COLUMN = "margin"

# (name, arrow type, dataset card dtype, meaning), in the order the files hold them
COLUMNS = (
    ("prompt", "string", "string", "shared transcript up to and including the final '\\n\\nAssistant:'"),
    ("chosen", "string", "string", "preferred response (prompt + chosen is the chosen transcript)"),
    ("rejected", "string", "string", "unfavored response (prompt + rejected is the rejected transcript)"),
    ("pair_id", "string", "string", "content hash of the pair (the same in every curate workspace)"),
    ("rank", "int32", "int32", "rank within the subset (1 = first picked)"),
    ("score", "float64", "float64", "the score the filter ranked by"),
    ("picked_by", "string", "string", "which rule picked the row (pos or neg half, or the filter's own label)"),
    ("pos_sim", "float64", "float64",
     "cos(E(chosen), E(policy generation)), aggregated over samples as the filter did"),
    ("neg_sim", "float64", "float64",
     "cos(E(rejected), E(policy generation)), aggregated over samples as the filter did"),
    ("flipped", "bool", "bool", "chosen and rejected are swapped from the source's label (flip strategy or --flip; "
     "Secrets of RLHF II, section 2.4.1)"),
)
MARGIN_SPEC = (MARGIN_COLUMN, "float64", "float64",
               "preference strength (max(mean, 0) * scale with --margin strength), used by RewardTrainer as the loss "
               "margin: d = r_chosen - r_rejected - margin")
