"""Business-key extraction from the config's ``[[key_rules]]``, compiled once and cached per system.

Extraction is on the hot path (every span, line and event), so the rules are turned into plain
tuples and regexes at start, and the rules that apply to a system are resolved once per system
name, not once per observation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from difflib import get_close_matches
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import unquote

from syncwatch.config.schema import PLACEHOLDER, ConfigFile, KeyRule, KeyType


@dataclass(frozen=True, slots=True)
class PathTemplate:
    """``/orders/{marketplace_order}`` as an anchored regex; ``template`` doubles as the route."""

    template: str
    pattern: re.Pattern[str]


@dataclass(frozen=True, slots=True)
class _Plan:
    """The rules that apply to one system, split by where they look. ``paths_by_head`` narrows the
    templates to those a path's first segment can match (a literal first segment must equal it),
    so a line tries two regexes instead of every template; ``paths`` serves unknown heads."""

    attributes: tuple[tuple[str, str], ...]
    paths: tuple[PathTemplate, ...]
    pointers: tuple[tuple[tuple[str, ...], str, str | None], ...]  # (tokens, key type, event type glob)
    regexes: tuple[tuple[str | None, re.Pattern[str]], ...]
    paths_by_head: dict[str, tuple[PathTemplate, ...]]


def _head(path: str) -> str:
    """The first segment of a path: ``/orders/17`` → ``orders``."""
    return path.split("/", 2)[1] if path.startswith("/") else ""


Templates = tuple[PathTemplate, ...]


def _by_head(templates: Templates) -> tuple[dict[str, Templates], Templates]:
    """(head → templates that may match a path with that head, in rule order; templates whose first
    segment holds a placeholder, which may match any head)."""
    wild = tuple(t for t in templates if "{" in _head(t.template) or not t.template.startswith("/"))
    heads = {_head(t.template) for t in templates if t not in wild}
    by_head = {head: tuple(t for t in templates if t in wild or _head(t.template) == head) for head in heads}
    return by_head, wild


# (key type, value, identity): a BusinessKey as a plain tuple, which is what the store writes.
Key = tuple[str, str, bool]
# (the keys found, the path template the URL path matched)
Extracted = tuple[tuple[Key, ...], str | None]


def compile_template(template: str, patterns: Mapping[str, str] | None = None) -> PathTemplate:
    """A placeholder matches one path segment, or the key type's own ``pattern`` where it has one,
    so ``/orders/{marketplace_order}`` does not claim ``/orders/PO-17`` for the wrong key type."""
    patterns = patterns or {}
    parts = PLACEHOLDER.split(template)
    # split() alternates literal text and placeholder names: even indexes are literal.
    regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>{patterns.get(p, '[^/]+')})" for i, p in enumerate(parts))
    return PathTemplate(template, re.compile(f"^{regex}/?$"))


def parse_pointer(pointer: str) -> tuple[str, ...]:
    """RFC 6901: ``/a/b~1c`` → ("a", "b/c")."""
    if not pointer:
        return ()
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in pointer.removeprefix("/").split("/"))


def resolve_pointer(document: Any, tokens: tuple[str, ...]) -> Any:
    """The value at ``tokens`` in ``document``, or None when any step is missing."""
    node = document
    for token in tokens:
        if isinstance(node, Mapping):
            node = node.get(token)
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node


def _values(value: Any) -> Iterable[str]:
    """Key values from an attribute: strings and numbers count, booleans and empties do not."""
    if isinstance(value, bool) or value is None:
        return ()
    if isinstance(value, list):
        return [v for item in value for v in _values(item)]
    if isinstance(value, str | int):
        text = str(value).strip()
        return (text,) if text else ()
    return ()


class KeyExtractor:
    """Turns attributes, a URL path and event data into typed business keys for one system."""

    def __init__(self, key_types: Mapping[str, KeyType], rules: Iterable[KeyRule]) -> None:
        self._identity = {name: kt.identity for name, kt in key_types.items()}
        # A value not of its type's shape ("#1001" for a numeric order id) would start an order of its
        # own: it is kept, as a descriptive key that links nothing.
        self._shapes = {name: re.compile(kt.pattern).fullmatch for name, kt in key_types.items() if kt.pattern}
        self._rules = list(rules)
        patterns = {name: kt.pattern for name, kt in key_types.items() if kt.pattern}
        self._templates = {
            r.path_template: compile_template(r.path_template, patterns) for r in self._rules if r.path_template
        }
        self._plans: dict[str, _Plan] = {}

    @classmethod
    def from_config(cls, file: ConfigFile) -> KeyExtractor:
        return cls(file.key_types, file.key_rules)

    def unread_system(self, system: str) -> str | None:
        """Why notices of ``system`` (a webhook's) would carry no keys of their own: no rule for its
        body names the system (only rules for every system, ``system = "*"``, apply), with the
        rule's system it may have meant. None when a rule reads it."""
        if any(r.system != "*" and r.json_pointer and fnmatchcase(system, r.system) for r in self._rules):
            return None
        named = sorted({r.system for r in self._rules if r.system != "*" and r.json_pointer})
        close = get_close_matches(system, named, n=1, cutoff=0.8)
        meant = f' (a rule names system = "{close[0]}": a typo?)' if close else ""
        return f'no [[key_rules]] json_pointer names system = "{system}"{meant}'

    def _plan(self, system: str) -> _Plan:
        plan = self._plans.get(system)
        if plan is None:
            plan = self._plans[system] = self._build_plan(system)
        return plan

    def _build_plan(self, system: str) -> _Plan:
        rules = [r for r in self._rules if fnmatchcase(system, r.system)]
        paths = tuple(self._templates[r.path_template] for r in rules if r.path_template)
        by_head, wild = _by_head(paths)
        return _Plan(
            attributes=tuple((r.attribute, r.key) for r in rules if r.attribute and r.key),
            paths=wild,
            pointers=tuple(
                (parse_pointer(r.json_pointer), r.key, r.event_type) for r in rules if r.json_pointer and r.key
            ),
            regexes=tuple((r.field, re.compile(r.regex)) for r in rules if r.regex),
            paths_by_head=by_head,
        )

    def extract(
        self,
        system: str,
        attributes: Mapping[str, Any],
        path: str | None = None,
        data: Any = None,
        event_type: str | None = None,
    ) -> Extracted:
        plan = self._plan(system)
        found: dict[tuple[str, str], None] = {}
        for name, key_type in plan.attributes:
            value = attributes.get(name)
            if value is None:
                continue
            if type(value) is str:  # the common case, without _values' generality
                value = value.strip()
                if value:
                    found[(key_type, value)] = None
                continue
            for text in _values(value):
                found[(key_type, text)] = None
        route = self._from_path(plan, path, found) if path and (plan.paths or plan.paths_by_head) else None
        if data is not None:
            for tokens, key_type, types in plan.pointers:
                if types is not None and (event_type is None or not fnmatchcase(event_type, types)):
                    continue
                for value in _values(resolve_pointer(data, tokens)):
                    found[(key_type, value)] = None
        if plan.regexes:
            self._from_regexes(plan, attributes, path, found)
        identity, shapes = self._identity, self._shapes
        return tuple(
            [(t, v, identity.get(t, True) and (t not in shapes or bool(shapes[t](v)))) for t, v in found]
        ), route

    def _from_path(self, plan: _Plan, path: str, found: dict[tuple[str, str], None]) -> str | None:
        path = path.split("?", 1)[0]
        route = None
        for template in plan.paths_by_head.get(_head(path), plan.paths):
            match = template.pattern.match(path)
            if match is None:
                continue
            route = route or template.template
            for key_type, value in match.groupdict().items():
                found[(key_type, unquote(value))] = None
        return route

    def _from_regexes(
        self, plan: _Plan, attributes: Mapping[str, Any], path: str | None, found: dict[tuple[str, str], None]
    ) -> None:
        for field, pattern in plan.regexes:
            texts = [attributes.get(field)] if field else [*attributes.values(), path]
            for text in texts:
                match = pattern.search(text) if isinstance(text, str) else None
                if match is None:
                    continue
                for key_type, value in match.groupdict().items():
                    if value:
                        found[(key_type, value)] = None
