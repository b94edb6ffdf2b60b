"""`syncwatch bench sim` runs end to end and reports its figures with their units."""

from __future__ import annotations

import json

import pytest

from syncwatch.cli import main


def test_bench_sim_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "sim", "--orders", "400", "--days", "2", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["orders"] == 400
    assert figures["spans"] > 8 * figures["orders"] and figures["records"] > figures["spans"]
    assert figures["orders_per_s"] > 0 and figures["records_per_s"] > figures["orders_per_s"]
    assert {"seconds", "output_mb"} <= figures.keys()
