"""`curate report`: how the FRFT subsets and similarities change across iterations; preference strength.

    from curate.report import intersect, cdf, html_report
    intersect(Workspace("workspace"))             # the paper's Table 3 (overlap of iteration i and j)
    cdf(Workspace("workspace"), eps=0.2)          # the paper's Figure 2 (CDF of pos_sim and neg_sim)
    strength_report(Workspace("workspace"))       # categories, deciles, Secrets of RLHF II's Figure 2
    html_report(Workspace("workspace"))           # one self-contained HTML file with all of it

One concern per module: overlap (the intersect query), similarities (load, stats, the CDF report), winrates,
strength (one identity of the strength table), figures (everything matplotlib) and html (the page). Only the
functions that draw import matplotlib, so `curate report intersect` without --png starts as fast as `curate sql`.
Files are written through curate.atomic, so a reader never sees half a file.
"""

from .figures import cdf_figure, heatmap_figure, histogram_figure, intersect_heatmap
from .html import html_report
from .overlap import INTERSECT_COLUMNS, INTERSECT_SQL, intersect
from .similarities import (
    AGGREGATES,
    CdfReport,
    Similarities,
    cdf,
    default_cdf_path,
    load_similarities,
    similarity_stats,
)
from .strength import StrengthReport, strength_report, write_strength_figures
from .winrates import winrate_table

__all__ = [
    "AGGREGATES", "INTERSECT_COLUMNS", "INTERSECT_SQL", "CdfReport", "Similarities", "cdf", "cdf_figure",
    "default_cdf_path", "heatmap_figure", "histogram_figure", "html_report", "intersect", "intersect_heatmap",
    "load_similarities", "similarity_stats", "StrengthReport", "strength_report", "winrate_table",
    "write_strength_figures",
]
