"""The demo's live simulator goes on from its generated week: a Replay of one of the week's dead-lettered
shipment notices finds it in the live ERP, moves the order on as a live replay does, and runs once."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from actions_support import World, partners_toml
from sqlalchemy import select

from actions.api import perform
from actions.results import ActionResult
from actions.services import close_all
from correlator.passes import Correlator
from syncwatch.cli import build_parser, main
from syncwatch.commands.demo import SEED, history_folder, sim_arguments
from syncwatch.config import load_config
from syncwatch.sim.driver import LiveOptions, LiveThread, otlp_exporter
from syncwatch.sim.faults import build_profile
from syncwatch.sim.generate import FILES, Plan, generate
from syncwatch.sim.history import HeldLetter, held_letters
from syncwatch.sim.ports import free_port_run
from syncwatch.store import actions as q
from syncwatch.store.schema import exceptions

CONFIRMATION = "POST /orders/{marketplace_order}/shipment-confirmation"


@dataclass
class Demo:
    world: World
    held: dict[str, HeldLetter]
    """The history's dead letters, by sales order."""

    def dead_lettered(self) -> list[dict[str, Any]]:
        query = select(exceptions).where(exceptions.c.category == "dead_lettered").order_by(exceptions.c.id)
        with self.world.store.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def letter_of(self, exception: dict[str, Any]) -> HeldLetter:
        with self.world.store.engine.connect() as conn:
            keys = q.transaction_keys_of(conn, exception["transaction_id"])
        return next(self.held[so] for so in keys["erp_order"] if so in self.held)

    def replay(self, exception_id: str, actor: str) -> ActionResult:
        return perform(self.world.store, self.world.config, action="replay", exception_id=exception_id, actor=actor)


def generate_history(folder: Path, store_url: str) -> None:
    """What the demo prepares, smaller: yesterday's traffic generated and ingested, dead letters among it."""
    yesterday = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    generate(Plan(1, 40, SEED, yesterday, build_profile(["none"], ["dead_letter=0.3"])), history_folder(folder))
    files = [str(history_folder(folder) / FILES[name]) for name in ("traces", "logs", "events", "gateway", "edge")]
    assert main(["ingest", "--db", store_url, *files]) == 0


@contextmanager
def demo(run_collector: Any, tmp_path: Path) -> Iterator[Demo]:
    """The collector's database holding the history, correlated, and the simulator started as the demo starts it."""
    base = free_port_run(6)
    collector = run_collector(partners_toml(base))
    url, folder = str(collector.store.engine.url), tmp_path / "demo"
    generate_history(folder, url)
    config_path = tmp_path / "actions.toml"
    config_path.write_text(partners_toml(base))
    config = load_config(str(config_path), {"db": url}, environ={})
    Correlator(collector.store, config).run_pass()
    shape = {"port": urlsplit(collector.url).port, "sim_base_port": base, "orders_per_minute": 1.0, "profile": "none"}
    args = build_parser(["sim"]).parse_args(sim_arguments(argparse.Namespace(**shape), folder, tmp_path / "logs"))
    options = LiveOptions(
        base_port=args.base_port,
        events_url=args.events_url,
        seed=args.seed,
        continue_after=args.continue_after / FILES["truth"],
        held=tuple(held_letters(args.dead_letters_from)),
    )
    held = {letter.erp_order: letter for letter in options.held}
    sim = LiveThread(options, build_profile(["none"], []), otlp_exporter(collector.url))
    with sim as driver:
        yield Demo(World(sim, driver, collector.store, config), held)
    close_all()


def test_a_replay_of_the_historys_dead_letter_redelivers_it_and_confirms_the_order(
    run_collector: Any, tmp_path: Path
) -> None:
    with demo(run_collector, tmp_path) as d:
        w, found = d.world, d.dead_lettered()
        assert len(d.held) >= 2 and len(found) == len(d.held), (d.held, found)
        assert {(e["status"], e["suggested_action"]) for e in found} == {("open", "replay")}
        exc = found[0]
        order = d.letter_of(exc)
        result = d.replay(exc["id"], "sam")
        assert result.ok, result.message
        w.settle()
        left = w.driver.network.erp.dead_letters
        assert order.event["id"] not in left and len(left) == len(d.held) - 1
        assert w.calls(f"{order.channel} {CONFIRMATION}") == 1 and w.calls("erp POST /invoices") == 1
        assert w.driver.network.partners[order.channel].documents[order.ref]["status"] == "shipment-confirmation"
        assert w.status(exc["id"]) == "resolved"
        assert [e["status"] for e in d.dead_lettered()].count("open") == len(d.held) - 1


def test_a_second_replay_of_the_historys_dead_letter_sends_nothing(run_collector: Any, tmp_path: Path) -> None:
    with demo(run_collector, tmp_path) as d:
        w, exc = d.world, d.dead_lettered()[0]
        assert d.replay(exc["id"], "sam").ok
        again = d.replay(exc["id"], "alex")
        w.settle()
        assert again.message.startswith("Already done by sam (act-"), again.message
        assert again.message.endswith("nothing was sent again."), again.message
        assert w.calls("erp POST /dead-letters/{letter}/redeliver") == 1
        assert w.calls(f"{d.letter_of(exc).channel} {CONFIRMATION}") == 1
        audited = [(a["actor"], a["result"]) for a in w.audit() if a["target"] == exc["id"]]
        assert audited[-1] == ("alex", "refused"), audited


def test_the_sample_weeks_dead_letters_are_the_notices_its_ground_truth_says_were_dead_lettered() -> None:
    sample = Path(__file__).resolve().parents[1] / "sample_data"
    with (sample / FILES["truth"]).open(encoding="utf-8") as truth:
        records = [json.loads(line) for line in truth]
    expected = {
        (r["keys"]["erp_order"][0], r["id"], r["channel"])
        for r in records
        if any(f["name"] == "dead_letter" for f in r["faults"])
    }
    held = held_letters(sample / FILES["events"])
    assert len(expected) == 5 and {(h.erp_order, h.ref, h.channel) for h in held} == expected
    assert {h.event["type"] for h in held} == {"com.syncwatch.shipment.shipped"}


def test_sim_says_when_the_dead_letters_file_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--dead-letters-from", str(tmp_path / "events.jsonl")]) == 2
    assert "there is no file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"not json\n", "line 1 is no JSON event (Expecting value"),
        (b"\n[1, 2]\n", "line 2 is no CloudEvent: expected an object whose data is an object"),
        (b'{"type": "com.syncwatch.shipment.shipped", "data": {"shipment_id": "SH-1"}}\n', "line 1: a com.syncwatch"),
        (b'{"type": "x", "data": "\xff"}\n', "line 1 is no JSON event ("),
    ],
)
def test_sim_names_the_line_of_a_dead_letters_file_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, said: str
) -> None:
    """A malformed file ended the simulator in a traceback (JSONDecodeError, AttributeError, KeyError)."""
    events = tmp_path / "events.jsonl"
    events.write_bytes(content)
    assert main(["sim", "--dead-letters-from", str(events)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"syncwatch sim: cannot take dead letters from {events}: {said}"), err
    assert "Traceback" not in err
