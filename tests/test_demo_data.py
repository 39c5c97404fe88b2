"""The preference set that ships for `make demo` (curate/demo_data/): reproducible and clean to ingest."""

from __future__ import annotations

from curate.demo_data import demo_sources
from curate.demo_data.build import build, write

from .conftest import query


def test_the_build_script_writes_the_shipped_files_byte_for_byte(tmp_path):
    written = write(build(), tmp_path)
    shipped = demo_sources()
    assert [p.name for p in written] == [p.name for p in shipped]
    for new, old in zip(written, shipped):
        assert new.read_bytes() == old.read_bytes(), f"{old} is not what build.py writes: rerun it"


def test_the_demo_set_ingests_without_rejects_or_flags(cli, tmp_path):
    ws = tmp_path / "ws"
    r = cli("ingest", *demo_sources(), "-w", ws, "--sft-fraction", "0.5")
    assert r.exit_code == 0, r.output
    assert dict(query(ws, "select split, count(*) from pairs group by 1")) == {"train": 320, "test": 64}
    assert query(ws, "select count(*) from rejects")[0][0] == 0
    assert query(ws, "select count(*) from pairs where len(flags) > 0")[0][0] == 0
    assert query(ws, "select distinct subset from pairs") == [("hh-demo",)]
    # train and test share no prompt
    assert query(ws, "select count(*) from (select prompt from pairs where split = 'train' intersect "
                     "select prompt from pairs where split = 'test')")[0][0] == 0
