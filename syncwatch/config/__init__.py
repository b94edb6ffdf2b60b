"""Load the one TOML config: packaged defaults, the user's file on top, settings resolved.

A user file is merged over the defaults section by section: tables merge one level deep (a
named entry such as ``[processes.order]``, or a field of ``[collectors]``, replaces the default's),
lists (key_rules, tailers) replace, and ``[users]`` and ``[partners]`` replace the packaged ones
whole, so a deployment never inherits the simulated network's sign-ins, nor partners at 127.0.0.1
that its retry policy would send to.
Every problem becomes one ``ConfigError`` sentence naming the file, the field and what was
expected; the CLI prints it and exits with 2.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import ValidationError

from syncwatch.config.schema import ConfigFile
from syncwatch.config.settings import BY_NAME, SETTINGS, coerce

DEFAULTS_NAME = "defaults.toml"
CONFIG_ENV = "SYNCWATCH_CONFIG"
REPLACED_TABLES = ("users", "partners")


class ConfigError(ValueError):
    """The config file (or a setting given by flag or environment) is invalid."""


@dataclass(frozen=True)
class Config:
    """The active configuration: the validated file and the resolved settings."""

    file: ConfigFile
    settings: dict[str, Any]
    origins: dict[str, str] = field(default_factory=dict)
    path: str | None = None
    own_webhooks: frozenset[str] = frozenset()  # the [webhooks.NAME] the user's file names; the rest are packaged
    own_partners: bool = False  # the user's file names its [partners]; else they are the simulator's, on this machine

    def __getattr__(self, name: str) -> Any:
        try:
            return self.settings[name]
        except KeyError:
            raise AttributeError(name) from None


def load_config(
    path: str | None = None, flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Resolve the config: flag → SYNCWATCH_* variable → config file → default."""
    environ = os.environ if environ is None else environ
    path = path or environ.get(CONFIG_ENV) or None
    raw, own = _read_defaults(), {}
    label = f"packaged {DEFAULTS_NAME}"
    if path:
        own = _read_toml(Path(path))
        raw, label = merge(raw, own), path
    file = _validate(raw, label)
    settings, origins = _resolve_settings(file.settings, flags or {}, environ, label)
    webhooks = own.get("webhooks")
    own_webhooks = frozenset(webhooks if isinstance(webhooks, dict) else ())
    return Config(file, settings, origins, path, own_webhooks, "partners" in own)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for section, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(section), dict) and section not in REPLACED_TABLES:
            merged[section] = {**base[section], **value}
        else:
            merged[section] = value
    return merged


def _read_defaults() -> dict[str, Any]:
    text = resources.files("syncwatch.config").joinpath(DEFAULTS_NAME).read_text(encoding="utf-8")
    return tomllib.loads(text)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the config file ({err})") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None


def _validate(raw: dict[str, Any], label: str) -> ConfigFile:
    try:
        return ConfigFile.model_validate(raw)
    except ValidationError as err:
        problems = [_problem(error, raw) for error in err.errors()]
        shown = problems[:SHOWN_PROBLEMS]
        more = len(problems) - len(shown)
        text = "\n".join(f"{label}: {problem}" for problem in shown)
        raise ConfigError(text + (f"\n(and {more} more problems)" if more else "")) from None


SHOWN_PROBLEMS = 10  # each is named, so one fix does not just reveal the next


def _problem(error: Any, raw: Any) -> str:
    where = _where(error["loc"], raw) or "(top level)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field (check the spelling against the README's configuration section)"
    return f"{where}: {message}"


def _where(loc: tuple[Any, ...], raw: Any) -> str:
    """Where a problem is, as the file reads: ``key_rules #3 (json_pointr = "/id", key = "tracking"),
    json_pointr`` — a list item counted from one, with what it says, not pydantic's ``key_rules.2``."""
    text, node = "", raw
    for step in loc:
        if isinstance(step, int) and isinstance(node, list):
            node = node[step] if step < len(node) else None
            text += f" #{step + 1}" + (f" ({item_text(node)})" if isinstance(node, dict) else "")
        else:
            text += f"{', ' if text.endswith(')') else '.' if text else ''}{step}"
            node = node.get(step) if isinstance(node, dict) else None
    return text


def item_text(item: Mapping[str, Any], fields: int = 2) -> str:
    """A list item of the config by its first fields, as TOML writes them: what the person can find."""
    return ", ".join(f"{k} = {json.dumps(v, default=str)}" for k, v in list(item.items())[:fields])


def _resolve_settings(
    from_file: dict[str, Any], flags: Mapping[str, Any], environ: Mapping[str, str], label: str
) -> tuple[dict[str, Any], dict[str, str]]:
    unknown = sorted(set(from_file) - BY_NAME.keys())
    if unknown:
        raise ConfigError(f"{label}: settings.{unknown[0]}: unknown setting; known: {', '.join(BY_NAME)}")
    try:
        secret = _holds_password(str(from_file.get("db", "")))
    except ValueError as err:  # says what is wrong, never the URL, which may hold a password
        raise ConfigError(f"{label}: settings.db is not a usable URL ({err})") from None
    if secret:  # secrets come from the environment only
        raise ConfigError(
            f"{label}: settings.db holds a password; put the URL in SYNCWATCH_DB (the environment), not the file"
        )
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for setting in SETTINGS:
        candidates = (
            (flags.get(setting.name), f"--{setting.name.replace('_', '-')}"),
            (environ.get(setting.env), setting.env),
            (from_file.get(setting.name), f"{label}: settings.{setting.name}"),
        )
        raw, origin = next(((v, o) for v, o in candidates if v is not None), (setting.default, "default"))
        try:
            values[setting.name] = coerce(setting, raw, origin)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        origins[setting.name] = origin
    return values, origins


def _holds_password(url: str) -> bool:
    """A password in the URL's user part or its query (``?password=``, ``?sslpassword=``); ValueError
    for a URL too broken to read (an unclosed ``[`` of an IPv6 address)."""
    parts = urlsplit(url)
    return bool(parts.password) or any("password" in name.lower() for name in parse_qs(parts.query))


__all__ = ["Config", "ConfigError", "load_config", "merge"]
