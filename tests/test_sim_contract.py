"""The simulator honours the packaged config: the key rules link every record of an order to
the order, and every stage of every process is matched by something the simulator writes."""

from __future__ import annotations

import json
import re
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from syncwatch.config import load_config
from syncwatch.config.schema import ConfigFile, KeyRule
from syncwatch.sim.clock import DEFAULT_START
from syncwatch.sim.faults import build_profile
from syncwatch.sim.generate import FILES, Plan, generate


class Components:
    """Union-find over key strings such as ``erp_order:SO-1`` and ``trace:<id>``."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        self.parent.setdefault(item, item)
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def join(self, items: list[str]) -> None:
        for other in items[1:]:
            self.parent[self.find(other)] = self.find(items[0])


def rule_keys(rule: KeyRule, attrs: dict[str, Any], data: dict[str, Any] | None) -> list[str]:
    if rule.attribute and rule.attribute in attrs:
        return [f"{rule.key}:{attrs[rule.attribute]}"]
    if rule.json_pointer and data is not None and rule.json_pointer[1:] in data:
        return [f"{rule.key}:{data[rule.json_pointer[1:]]}"]
    if rule.regex and rule.field in attrs:
        match = re.match(rule.regex, str(attrs[rule.field]))
        return [f"{name}:{value}" for name, value in (match.groupdict() if match else {}).items() if value]
    return []


def identity_keys(config: ConfigFile, system: str, attrs: dict[str, Any], data: dict[str, Any] | None) -> list[str]:
    identity = {name for name, kind in config.key_types.items() if kind.identity}
    found = [k for rule in config.key_rules if fnmatchcase(system, rule.system) for k in rule_keys(rule, attrs, data)]
    return [k for k in found if k.split(":", 1)[0] in identity]


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("contract")
    generate(Plan(7, 70, 21, DEFAULT_START, build_profile(["chaos"])), folder)
    return folder


@pytest.fixture(scope="module")
def config() -> ConfigFile:
    return load_config(None, {}, environ={}).file


def records(out: Path) -> list[tuple[str, str, str, dict[str, Any], dict[str, Any] | None, str | None]]:
    """(kind, system, operation, attributes, event data, trace id) for every span and event."""
    found = []
    for line in (out / FILES["traces"]).read_text(encoding="utf-8").splitlines():
        for resource in json.loads(line)["resourceSpans"]:
            system = resource["resource"]["attributes"][0]["value"]["stringValue"]
            for span in resource["scopeSpans"][0]["spans"]:
                attrs = {a["key"]: next(iter(a["value"].values())) for a in span["attributes"]}
                found.append(("span", system, span["name"], attrs, None, span["traceId"]))
    for line in (out / FILES["events"]).read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        trace = event["traceparent"].split("-")[1] if "traceparent" in event else None
        found.append(("event", event["source"], event["type"], {}, event["data"], trace))
    return found


def test_key_rules_link_every_order_into_one_component(out: Path, config: ConfigFile) -> None:
    components = Components()
    for _, system, _, attrs, data, trace in records(out):
        keys = identity_keys(config, system, attrs, data)
        components.join(keys + ([f"trace:{trace}"] if trace and keys else []))
    truth = [json.loads(line) for line in (out / FILES["truth"]).read_text(encoding="utf-8").splitlines()]
    for record in truth:
        keys = [f"{kind}:{value}" for kind, values in record["keys"].items() for value in values]
        assert len({components.find(key) for key in keys}) == 1, record["id"]


def test_every_record_with_a_trace_or_key_reaches_an_identity_key(out: Path, config: ConfigFile) -> None:
    unlinked = [
        (system, operation)
        for kind, system, operation, attrs, data, _ in records(out)
        if not identity_keys(config, system, attrs, data)
    ]
    assert unlinked == []


def test_every_process_stage_is_matched(out: Path, config: ConfigFile) -> None:
    seen = {(kind, system, operation) for kind, system, operation, *_ in records(out)}
    for process in config.processes.values():
        for stage in process.stages:
            assert any(
                fnmatchcase(system, m.system or "*") and operation == m.operation and (m.kind in (None, kind))
                for m in stage.match
                for kind, system, operation in seen
            ), stage.name
