"""Writes the HTML report: one self-contained page (inline CSS, PNGs as data URIs, no script) with every report.

    from curate.report import html_report
    html_report(Workspace("workspace"))            # floors from the subsets' own eps
    html_report(Workspace("workspace"), eps=0.2)   # one floor, 1 - 0.2

The page reads offline; a section that cannot be built yet (nothing scored, one iteration only) says so.
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Sequence

from .. import subsets as subset_queries
from ..atomic import write_text
from ..errors import CurateError
from ..runs import lineage_rows
from ..tables import TABLES
from ..workspace import Workspace, query_frame, utcnow
from .figures import (
    cdf_figure,
    floors_label,
    heatmap_figure,
    histogram_figure,
    png,
    strength_histogram_figure,
    strength_std_figure,
    winrate_figure,
)
from .overlap import intersect
from .similarities import (
    SUBSET_EPS_SQL,
    Similarities,
    floor_of,
    floor_sources,
    load_similarities,
    similarity_stats,
)
from .strength import StrengthReport, strength_report
from .winrates import pivot as winrate_pivot
from .winrates import verdicts as winrate_verdicts
from .winrates import winrate_table

SAMPLES_SQL = """
select sp.subset_id, sp.rank, sp.picked_by, round(sp.score, 4) as score, p.pair_id, p.prompt, p.chosen, p.rejected
from subset_pairs sp
join pairs p using (pair_id)
qualify row_number() over (partition by sp.subset_id order by sp.rank, sp.picked_by) <= $n
order by sp.subset_id, sp.rank, sp.picked_by
"""

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.text { white-space: pre-wrap; max-width: 28rem; font-family: ui-monospace, monospace; font-size: 0.8rem; }
.note { color: #666; font-style: italic; } .meta { color: #555; }
img { max-width: 100%; border: 1px solid #eee; }
code { background: #f4f4f4; padding: 0 0.2rem; }
"""


def html_report(ws: Workspace, output: str | os.PathLike | None = None, eps: float | None = None,
                samples: int = 5) -> Path:
    """Write one self-contained HTML report (inline CSS, PNGs as data URIs) and return its path.

    eps None: the figures mark, and the stats count above, the floor 1 - eps of every eps the subsets were made
    with (FALLBACK_EPS, said on the page, when no subset records one); an eps forces that one floor.
    """
    import curate

    ws.require()
    path = Path(output) if output else ws.reports_dir() / "report.html"
    out: list[str] = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>curate report: {_e(ws.root.name)}</title>", f"<style>{CSS}</style></head><body>",
        "<h1>curate report</h1>",
        f'<p class="meta">workspace <code>{_e(ws.root)}</code> · generated {_e(utcnow())} · '
        f"curate {_e(curate.__version__)}</p>",
    ]
    with ws.connect() as con:
        counts = {t: con.execute(f'select count(*) from "{t}"').fetchall()[0][0] for t in TABLES}
        subsets = query_frame(con, subset_queries.LIST_SQL, subset_queries.list_params())
        subset_eps = con.execute(SUBSET_EPS_SQL).fetchall()
        sample_rows = query_frame(con, SAMPLES_SQL, {"n": samples})

    out.append("<h2>Run summary</h2>")
    out.append(_table(["table", "rows"], [[t, n] for t, n in counts.items()]))
    steps = _steps(ws)
    out.append("<h3>Steps</h3>")
    out.append(_table(["created_at", "step", "manifest", "summary"], steps) if steps else
               _note("No manifests yet: every curate step (ingest, embed, score, filter) writes one."))

    runs = _runs(ws)
    if runs:
        out.append("<h3>FRFT runs (curate run)</h3>")
        out.append(_note("One row per step, in order; from: what the step started from, made: what it produced "
                         "(paths relative to the workspace). `curate runs` shows the same."))
        out.append(_table(["run", "step", "branch", "it", "status", "seconds", "from", "made"], runs))

    out.append("<h2>Subsets</h2>")
    if subsets.height:
        out.append(_table(subsets.columns, subsets.rows()))
    else:
        out.append(_note("No subsets yet: make them with `curate filter --strategy split-even --eps 0.2`."))

    out.append("<h2>Similarities</h2>")
    sources, assumed = floor_sources(eps, subset_eps, subsets.height)
    try:
        sims = load_similarities(ws, eps=list(sources))
    except CurateError as e:
        out.append(_note(str(e)))
    else:
        out.extend(_similarities_section(sims, sources, assumed))

    if counts.get("strength"):  # no section at all before `curate strength` ran
        out.append("<h2>Preference strength (Secrets of RLHF II, section 2.2)</h2>")
        try:
            rep = strength_report(ws)
        except CurateError as e:
            out.append(_note(str(e)))
        else:
            out.extend(_strength_section(rep))

    out.append("<h2>Overlap across iterations (FRFT paper, Table 3)</h2>")
    try:
        inter = intersect(ws)
    except CurateError as e:
        out.append(_note(str(e)))
    else:
        out.append(_note("share_pairs: the share of the pairs picked in iteration_a that are picked again in "
                         "iteration_b; share_prompts: the same over distinct prompts; jaccard_pairs: |A∩B| / |A∪B|."))
        out.append(_table(inter.columns, inter.rows()))
        out.append(_img(png(heatmap_figure(inter)), "share of pairs picked again, per strategy"))

    out.append("<h2>Win rates against the baseline (FRFT paper, Tables 1-2)</h2>")
    try:
        wins = winrate_table(ws)
    except CurateError as e:
        out.append(_note(str(e)))
    else:
        columns, rows = winrate_pivot(wins)
        out.append(_note("Win rate in % with its 95% bootstrap interval: (wins + ties/2) / judged prompts, each prompt "
                         "judged in both orders (a verdict that changes with the order is a tie)."))
        out.append(_table(columns, rows))
        out.append(_img(png(winrate_figure(wins)), "win rates with 95% intervals"))
        out.append("<ul>" + "".join(f"<li>{_e(line)}</li>" for line in winrate_verdicts(wins)) + "</ul>")

    out.append(f"<h2>Sample rows (top {samples} by rank)</h2>")
    if not subsets.height:
        out.append(_note("No subsets yet."))
    for name, sid in subsets.select("name", "subset_id").iter_rows():
        rows = sample_rows.filter(sample_rows["subset_id"] == sid)
        out.append(f"<h3>{_e(name)}</h3>")
        if not rows.height:
            out.append(_note("This subset holds no pairs."))
            continue
        out.append(_table(
            ["rank", "picked_by", "score", "pair_id", "prompt", "chosen", "rejected"],
            [[r["rank"], r["picked_by"], r["score"], r["pair_id"][:12], _Text(_shorten(r["prompt"], 300, tail=True)),
              _Text(_shorten(r["chosen"], 300)), _Text(_shorten(r["rejected"], 300))] for r in rows.iter_rows(named=True)],
        ))
    out.append("</body></html>\n")
    return write_text(path, "\n".join(out))


def _similarities_section(sims: Similarities, sources: dict[float, str], assumed: str | None) -> list[str]:
    """The stats table (one above-floor column per floor) and the histogram and CDF figures."""
    source_of = {floor_of(e): (e, why) for e, why in sources.items()}
    floors = "; ".join(
        f"{above} is the share of pairs with a similarity above the floor 1 - eps = {floor:g} "
        f"(eps {source_of[floor][0]:g}: {source_of[floor][1]})" for floor, above in sims.above_columns())
    stats = similarity_stats(sims)
    return [
        *([_note(assumed)] if assumed else []),
        f'<p class="meta">embedding model <code>{_e(sims.model_id)}</code>; {_e(floors)}.</p>',
        _table(stats.columns, stats.rows()),
        "<h3>Histograms per iteration</h3>",
        _img(png(histogram_figure(sims)), f"pos_sim and neg_sim histograms per iteration; {floors_label(sims)}"),
        "<h3>Cumulative distribution (FRFT paper, Figure 2)</h3>",
        _img(png(cdf_figure(sims)), f"cumulative distribution of pos_sim and neg_sim; {floors_label(sims)}"),
    ]


def _strength_section(rep: StrengthReport) -> list[str]:
    """The newest identity's categories (per subset too), deciles, histogram and the std-vs-mean groups."""
    others = rep.identities - 1
    meta = (f"identity <code>{_e(rep.identity)}</code>: method {_e(rep.method)}, {_e(rep.n_models)} models, "
            f"{_e(rep.folds)} folds" + (f", features <code>{_e(rep.features)}</code>" if rep.features else "")
            + f", {rep.pairs:,} pairs, computed {_e(rep.created_at)}.")
    out = [f'<p class="meta">{meta}</p>',
           *([_note(f"{others} other identit{'y' if others == 1 else 'ies'} in the strength table: "
                    "`curate report strength --strength IDENTITY` shows one.")] if others else []),
           _note("d = r(chosen) - r(rejected) per model; mean and std over the models (eq. 4). incorrect: mean < 0 "
                 "(likely mislabelled); shares with their 95% Wilson interval."),
           _table(rep.categories.columns, rep.categories.rows())]
    if rep.by_subset.height:
        out += ["<h3>By subset</h3>", _table(rep.by_subset.columns, rep.by_subset.rows())]
    out += ["<h3>Deciles of the mean (1: weakest)</h3>", _table(rep.deciles.columns, rep.deciles.rows()),
            "<h3>Histogram of the mean by category</h3>",
            _img(png(strength_histogram_figure(rep)), "histogram of the mean strength, stacked by category"),
            "<h3>Standard deviation against mean (Secrets of RLHF II, Figure 2)</h3>",
            _note(f"The pairs sorted by mean in {rep.groups.height} equal groups: the paper finds the mean of the "
                  "stds U-shaped, highest for the weakest and the strongest pairs."),
            _img(png(strength_std_figure(rep)), "std against mean per pair, and per group of pairs sorted by mean"),
            _table(rep.groups.columns, rep.groups.rows())]
    return out


def _runs(ws: Workspace) -> list[list]:
    return [[r["run_id"], r["step"], r["branch"], r["iteration"], r["status"], r["seconds"], _Text(r["from"]),
             _Text(r["made"])] for r in lineage_rows(ws)]


class _Text(str):
    """A long text cell (kept as written, wrapped)."""


def _e(v) -> str:
    return html.escape(str(v), quote=True)


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _cell(v) -> str:
    if v is None:
        return "<td></td>"
    if isinstance(v, _Text):
        return f'<td class="text">{_e(v)}</td>'
    if isinstance(v, bool):
        return f"<td>{v}</td>"
    if isinstance(v, int):
        return f'<td class="num">{v:,}</td>'
    if isinstance(v, float):
        return f'<td class="num">{v:.4g}</td>'
    return f"<td>{_e(v)}</td>"


def _table(columns: Sequence[str], rows) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "\n".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def _img(data: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'


def _shorten(text: str | None, n: int, tail: bool = False) -> str:
    """At most n characters; a prompt keeps its end (the last human turn), a response its start."""
    text = "" if text is None else text.strip()
    if len(text) <= n:
        return text
    return "…" + text[-(n - 1):] if tail else text[: n - 1] + "…"


def _steps(ws: Workspace) -> list[list]:
    """(created_at, step, manifest file, summary) of every manifest, oldest first."""
    rows = []
    for p in sorted(ws.manifests_dir.glob("*.json")) if ws.manifests_dir.exists() else []:
        try:
            m = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            rows.append(["", p.name.split("-", 1)[0], p.name, f"unreadable: {e}"])
            continue
        rows.append([str(m.get("created_at", "")), str(m.get("step") or p.name.split("-", 1)[0]), p.name,
                     _step_summary(m)])
    return sorted(rows, key=lambda r: (r[0], r[2]))


def _step_summary(m: dict) -> str:
    bits = []
    for key in ("name", "strategy", "branch", "iteration", "model_id"):
        if m.get(key) not in (None, ""):
            bits.append(f"{key} {m[key]}")
    counts = m.get("counts")
    if isinstance(counts, dict):
        for k, v in counts.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                bits.append(f"{k} {v:,}")
            elif isinstance(v, dict) and v and all(isinstance(x, (int, float)) for x in v.values()):
                bits.append(f"{k} " + ", ".join(f"{a} {b:,}" for a, b in v.items()))
    text = "; ".join(bits)
    return text if len(text) <= 300 else text[:299] + "…"
