"""`curate run`: FRFT(alpha) end to end from one TOML config.

    config.py    the TOML config: sections, types, checks with file and line
    layout.py    where a run keeps things: branches, subset names, checkpoint folders
    plan.py      the plan of steps, their execution, the `runs` rows, resume after a change or a kill
    steps.py     each step: one library call with the config's settings
    estimate.py  the work and time a config will take (`--dry-run`)

    from curate.run import Runner, load
    Runner(load("configs/demo.toml"), resume=True).execute()
"""

from .config import RunConfig, load, parse
from .estimate import estimate
from .plan import Runner, Step

__all__ = ["RunConfig", "Runner", "Step", "estimate", "load", "parse"]
