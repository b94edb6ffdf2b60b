"""The active config as it may be shown: URLs without passwords, token variables by name, never their values."""

from __future__ import annotations

import os

import pandas as pd

from syncwatch.config import Config
from syncwatch.store.engine import describe, parse_url
from syncwatch.store.errors import DatabaseUnavailable

SECRET_WORDS = ("password", "secret", "token", "key")


def shown_value(name: str, value: object) -> str:
    """A setting's value with credentials removed: database URLs hide the password, secret-named values vanish."""
    text = str(value)
    if name == "db":
        try:
            return describe(parse_url(text))
        except DatabaseUnavailable:
            return "(not a valid URL)"
    if any(word in name for word in SECRET_WORDS) and not name.endswith("_env"):
        return "(set)" if text else ""
    return text


def settings_table(config: Config) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"setting": name, "value": shown_value(name, value), "from": config.origins.get(name, "")}
            for name, value in config.settings.items()
        ]
    )


def partners_table(config: Config) -> pd.DataFrame:
    """Where each partner is and which variable holds its token (whether it is set, not what it is)."""
    return pd.DataFrame(
        [
            {
                "partner": name,
                "kind": p.kind,
                "base URL": p.base_url,
                "token variable": p.token_env or "",
                "token set": bool(p.token_env and os.environ.get(p.token_env)),
                "alternates": ", ".join(p.alternates),
            }
            for name, p in config.file.partners.items()
        ]
    )
