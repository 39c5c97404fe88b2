"""The dataset card of an exported folder (README.md): YAML front matter, what the subset is, how it was made.

The license in the front matter comes from the sources: a LICENSE file beside a source file (or up to two
folders above it), or a Hub dataset whose license curate knows. Sources that disagree, or name nothing curate
recognises, give 'other'.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .spec import COLUMNS, MARGIN_SPEC, PROVENANCE_FILE, PROVENANCE_KEY

if TYPE_CHECKING:
    import pyarrow as pa

# Licenses we can name from a LICENSE file's opening lines or a known Hub id; anything else is 'other'.
LICENSE_PATTERNS = (
    (r"\bMIT License\b", "mit"),
    (r"\bApache License\b.*\b2\.0\b", "apache-2.0"),
    (r"\bCreative Commons Attribution-ShareAlike 4\.0\b", "cc-by-sa-4.0"),
    (r"\bCreative Commons Attribution 4\.0\b", "cc-by-4.0"),
    (r"\bCC0 1\.0\b", "cc0-1.0"),
)
KNOWN_HUB_LICENSES = {"Anthropic/hh-rlhf": "mit"}  # the license file of github.com/anthropics/hh-rlhf
LICENSE_FILES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "COPYING")


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                         (10_000_000, "1M<n<10M")):
        if n < limit:
            return label
    return "10M<n<100M"


def to_yaml(obj: Any) -> str:
    """Block-style YAML for the card's front matter (PyYAML, which huggingface_hub also uses for cards)."""
    import yaml

    return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, default_flow_style=False).rstrip("\n")


def card_metadata(prov: dict, table: "pa.Table") -> dict:
    """The card's YAML front matter: license, task, tags, the data files and their features."""
    dtypes = {name: dtype for name, _, dtype, _ in COLUMNS + (MARGIN_SPEC,)}
    meta: dict[str, Any] = {"license": prov["license"]}
    if prov["license"] == "other":
        meta["license_name"] = "unknown"  # the sources named no license curate knows: see the card's Sources
    meta.update({
        "pretty_name": prov["subset"]["name"],
        "task_categories": ["text-generation", "text-classification"],
        "tags": ["rlhf", "frft", "preference", "reward-modeling", "trl", "curate"],
        "size_categories": [_size_category(table.num_rows)],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
        "dataset_info": {
            "features": [{"name": name, "dtype": dtypes[name]} for name in table.schema.names],
            "splits": [{"name": "train", "num_bytes": table.nbytes, "num_examples": table.num_rows}],
            "dataset_size": table.nbytes,
        },
    })
    return meta


def _cell(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    s = "" if v is None else (json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else str(v))
    return s.replace("|", "\\|").replace("\n", " ")


def dataset_card(prov: dict, table: "pa.Table", *, repo_id: str | None = None) -> str:
    """README.md of an exported folder: YAML front matter, then what the subset is and how it was made."""
    s, p, m = prov["subset"], prov["subset"]["params"], prov["embedding_model"]
    counts = s.get("counts") or {}
    name = s["name"]
    floor = p.get("floor", None if p.get("eps") is None else round(1 - p["eps"], 12))
    where = repo_id or f"path/to/{name}"
    lines = ["---", to_yaml(card_metadata(prov, table)), "---", "", f"# {name}", ""]
    paper = f" ({s['paper']})" if s.get("paper") else ""
    scored = "floor" in p  # an FRFT filter over an iteration's scores (clean and flip read strength instead)
    lines += [
        f"Preference pairs picked by curate with the {'FRFT ' if scored else ''}filter `{s['strategy']}`{paper} "
        + (f"from iteration {s['iteration']} of branch `{s['branch']}`" if scored else "")
        + f": **{prov['rows']:,} rows** "
        f"({prov['distinct_pairs']:,} distinct pairs)"
        + (f" out of {counts['scored']:,} scored pairs" if "scored" in counts else "") + ".",
        "",
        "Rows are in rank order. `prompt`, `chosen` and `rejected` are TRL's standard preference format with an "
        "explicit prompt (`prompt + chosen` is the full chosen transcript), so `trl.RewardTrainer` takes the "
        "`train` split as it is; the other columns say why each row was picked.",
        "",
    ]
    if prov["picked_twice"]:
        lines += [
            f"**{prov['picked_twice']:,} pair(s) appear twice**: picked by both halves of the filter (`picked_by` "
            "`pos` and `neg`). The FRFT paper keeps both copies (section 5.3, Part 2), and so does this export; "
            "drop duplicates on `pair_id` if you want each pair once.",
            "",
        ]
    if prov.get("flipped_rows"):
        lines += [
            f"**{prov['flipped_rows']:,} row(s) are flipped** (`flipped` true): their preference strength is among "
            "the weakest, so `chosen` and `rejected` are written swapped from the source's label (Secrets of RLHF "
            "II, section 2.4.1).",
            "",
        ]
    lines += ["## Columns", "", "| column | type | meaning |", "|---|---|---|"]
    docs = {name: (dtype, doc) for name, _, dtype, doc in COLUMNS + (MARGIN_SPEC,)}
    for col in table.schema.names:
        dtype, doc = docs[col]
        if col in ("pos_sim", "neg_sim"):
            doc = doc.replace("as the filter did", f"by their {prov['similarity_aggregate']} (as the filter did)")
        lines.append(f"| `{col}` | {dtype} | {_cell(doc)} |")
    lines += ["", "## Provenance", "", "| | |", "|---|---|"]
    model_desc = m.get("model_id")
    if m.get("name"):
        model_desc = f"{m['model_id']} ({m['name']}"
        model_desc += f", revision {m['revision']}" if m.get("revision") else ""
        model_desc += f", weights sha256 {m['weights_sha256']}" if m.get("weights_sha256") else ""
        model_desc += ")"
    param_desc = ", ".join(f"{k} {_cell(v)}" for k, v in (
        ("eps", p.get("eps")), ("floor", floor), ("size", p.get("size")), ("aggregate", p.get("aggregate")),
        ("distinct", p.get("distinct"))) if v is not None)
    if p.get("user"):
        param_desc += f", user parameters {_cell(p['user'])}"
    picked = ", ".join(f"{k} {v:,}" for k, v in prov["picked_by"].items())
    floor_counts = ", ".join(f"{k.replace('_', ' ')} {counts[k]:,}" for k in (
        "pos_above_floor", "neg_above_floor", "both_above_floor", "either_above_floor") if k in counts)
    rows = [
        ("subset", f"`{name}` (subset_id `{s['subset_id']}`)"),
        ("strategy", f"`{s['strategy']}`{paper}"),
        ("parameters", param_desc),
        ("iteration, branch", f"{s['iteration']}, `{s['branch']}`"),
        ("embedding model", model_desc),
        ("policy", ", ".join(f"`{x}`" for x in prov["policies"]) or "(not recorded)"),
        ("rows", f"{prov['rows']:,} ({prov['distinct_pairs']:,} distinct pairs, {prov['picked_twice']:,} picked "
                 f"twice; picked by: {picked})"),
        ("scored pairs", f"{counts['scored']:,}; above the floor: {floor_counts}" if "scored" in counts else None),
        ("preference strength", _strength_desc(p)),
        ("margin", f"max(mean, 0) * {prov['margin']['scale']:g} from strength identity `{prov['margin']['identity']}`"
         if (prov.get("margin") or {}).get("source") == "strength" else None),
        ("filter SQL", f"`{prov['filter_sql'].get('file') or '?'}`, sha256 `{prov['filter_sql']['sha256']}`"),
        ("subset created", s.get("created_at")),
        ("exported", prov["exported_at"]),
        ("license", prov["license"] + (f" (from {', '.join(prov['license_from'])})" if prov["license_from"]
                                       else " (no license curate recognises in the sources)")),
        ("versions", ", ".join(f"{k} {v}" for k, v in prov["versions"].items() if k != "platform")),
    ]
    lines += [f"| {k} | {_cell(v)} |" for k, v in rows if v is not None]
    lines += ["", "### Sources", "", "| source | rows here | sha256 | size | ingest |", "|---|---|---|---|---|"]
    for src in prov["sources"]:
        lines.append(f"| `{_cell(src['source'])}` | {src['rows_in_export']:,} | `{src.get('sha256') or '?'}` | "
                     f"{_cell(src.get('size'))} | `{src['ingest_id']}` |")
    if prov["generations"]:
        lines += ["", "### Policy generations", "", "| source | policy | sha256 | size |", "|---|---|---|---|"]
        for g in prov["generations"]:
            lines.append(f"| `{_cell(g.get('source'))}` | `{_cell(g.get('policy'))}` | `{g.get('sha256') or '?'}` | "
                         f"{_cell(g.get('size'))} |")
    lines += ["", f"The same record as JSON is in `{PROVENANCE_FILE}` (and in the Parquet file's schema metadata, "
              f"key `{PROVENANCE_KEY.decode()}`)."]
    if prov["filter_sql"].get("sql"):
        lines += ["", "<details><summary>The filter's SQL</summary>", "", "```sql",
                  prov["filter_sql"]["sql"].rstrip(), "```", "", "</details>"]
    local = repo_id is None
    lines += [
        "", "## Load it", "", "```python", "from datasets import load_dataset", "",
        f'ds = load_dataset("{where}")["train"]' + ("   # this folder" if local else ""),
        "```", "", "```python", "import polars as pl", "",
        (f'df = pl.read_parquet("{where}/data/*.parquet")' if local
         else f'df = pl.read_parquet("hf://datasets/{repo_id}/data/*.parquet")'),
        "```", "", "```sql",
        (f"-- duckdb\nselect * from '{where}/data/*.parquet' order by rank;" if local
         else f"-- duckdb\nselect * from 'hf://datasets/{repo_id}/data/*.parquet' order by rank;"),
        "```", "", "Train a reward model on it with TRL:", "", "```python",
        "from trl import RewardConfig, RewardTrainer", "",
        'trainer = RewardTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", args=RewardConfig(output_dir="rm"), '
        "train_dataset=ds)",
        "trainer.train()", "```", "",
    ]
    return "\n".join(lines)


def _strength_desc(p: dict) -> str | None:
    """The strength identity a subset was cut with and its fractions (clean, flip, --clean, --flip)."""
    if not p.get("strength"):
        return None
    keys = ("drop_below", "drop_categories", "bottom", "clean", "flip")
    rules = [f"{k.replace('_', '-')} {_cell(p[k])}" for k in keys if p.get(k) is not None]
    return f"identity `{p['strength']}`" + (f"; {', '.join(rules)}" if rules else "")


# -- the license ----------------------------------------------------------------------------------
def license_of(sources: list[str]) -> tuple[str, list[str]]:
    """The sources' license when every source names the same one (LICENSE file or known Hub id), else 'other'."""
    found, where = set(), []
    for source in sources:
        lic, src = _source_license(source)
        found.add(lic)
        if src:
            where.append(src)
    if len(found) == 1 and None not in found:
        return found.pop(), sorted(set(where))
    return "other", []


def _source_license(source: str) -> tuple[str | None, str | None]:
    if source.startswith("hf:"):
        repo = source[3:]
        return KNOWN_HUB_LICENSES.get(repo), (f"hf:{repo}" if repo in KNOWN_HUB_LICENSES else None)
    for folder in list(Path(source).parents)[:3]:  # the file's folder and two above (HH-RLHF: repo/subset/file)
        for name in LICENSE_FILES:
            path = folder / name
            if path.is_file():
                try:
                    head = path.read_text(encoding="utf-8", errors="replace")[:400]
                except OSError:
                    return None, None
                for pattern, lic in LICENSE_PATTERNS:
                    if re.search(pattern, head):
                        return lic, str(path)
                return None, str(path)
    return None, None

