"""curate: data-centric filtering and dataset curation for RLHF preference data (FRFT)."""

__version__ = "0.1.0"
