"""The local sign-in file: one user per line, a salted scrypt hash each; no plain password is ever kept.

Used when no OIDC provider is configured for ``st.login``. Lines read ``name:salt_hex:hash_hex``;
roles are not kept here but in the config's [users], which the action layer also reads.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

# scrypt cost: interactive-login strength (about 50 ms and 16 MB on a small machine).
N, R, P, DKLEN = 2**14, 8, 1, 32


def hash_password(password: str, salt: bytes | None = None) -> tuple[bytes, bytes]:
    salt = salt if salt is not None else os.urandom(16)
    return salt, hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=DKLEN)


def read_users(path: Path) -> dict[str, tuple[bytes, bytes]]:
    """name -> (salt, hash); blank lines and # comments are skipped."""
    users: dict[str, tuple[bytes, bytes]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, salt, digest = line.split(":")
        users[name] = (bytes.fromhex(salt), bytes.fromhex(digest))
    return users


def verify(path: Path, name: str, password: str) -> bool:
    """Whether ``password`` is ``name``'s; an unknown name costs the same time as a wrong password."""
    users = read_users(path) if path.exists() else {}
    salt, expected = users.get(name, (b"\0" * 16, b""))
    _, digest = hash_password(password, salt)
    return bool(expected) and hmac.compare_digest(digest, expected)


def add_user(path: Path, name: str, password: str) -> None:
    """Add or replace ``name``; the file is written whole and readable by its owner only."""
    if not name or ":" in name:
        raise ValueError("a user name must be non-empty and contain no ':'")
    users = read_users(path) if path.exists() else {}
    users[name] = hash_password(password)
    lines = [f"{n}:{salt.hex()}:{digest.hex()}" for n, (salt, digest) in sorted(users.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)
