"""What actions share per store and config: partner clients, the tracer, and a clock."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

import httpx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from actions import telemetry
from actions.client import PartnerClient
from actions.errors import NotActionable
from syncwatch.config import Config
from syncwatch.model import utcnow
from syncwatch.store import Store


@dataclass
class Services:
    store: Store
    config: Config
    provider: TracerProvider
    clock: Callable[[], datetime] = utcnow
    transport: httpx.BaseTransport | None = None
    clients: dict[str, PartnerClient] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def tracer(self) -> Tracer:
        return self.provider.get_tracer("syncwatch.actions")

    def client(self, name: str) -> PartnerClient:
        """The partner's client, made once: its connection pool and rate limit are shared."""
        partner = self.config.file.partners.get(name)
        if partner is None:
            raise NotActionable(f"no partner {name} is configured; add it under [partners] to act on it")
        with self.lock:
            if name not in self.clients:
                self.clients[name] = PartnerClient(name, partner, self.tracer, self.transport)
            return self.clients[name]

    def partner_at(self, url_or_host: str) -> str | None:
        """The configured partner a URL or host name belongs to (its base URL or one of its hosts)."""
        parts = urlsplit(url_or_host if "//" in url_or_host else f"//{url_or_host}")
        for name, partner in self.config.file.partners.items():
            base = urlsplit(partner.base_url)
            if (parts.hostname, parts.port) == (base.hostname, base.port) or parts.hostname in partner.hosts:
                return name
        return None

    def flush(self) -> None:
        self.provider.force_flush()

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        self.provider.shutdown()


_BY_STORE: weakref.WeakKeyDictionary[Store, dict[int, Services]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def services_for(store: Store, config: Config) -> Services:
    """One ``Services`` per store and config, so every caller shares clients and rate limits."""
    with _LOCK:
        by_config = _BY_STORE.setdefault(store, {})
        if id(config) not in by_config:
            by_config[id(config)] = Services(store, config, telemetry.provider(store, config))
        return by_config[id(config)]


def close_all() -> None:
    with _LOCK:
        for by_config in list(_BY_STORE.values()):
            for services in by_config.values():
                services.close()
        _BY_STORE.clear()
