"""Who a connection is: the owner of its jobs, and the key of its limits.

Jobs belong to an identity, never to a ``hello`` name (which any client may pick):

- On a team server, ``--tokens-file`` names one token per user; a connection that shows
  a user's token *is* that user, from any machine and any number of connections.
- Otherwise each client gets a secret in ``welcome`` and is whoever holds that secret:
  a client that reconnects sends it back in ``hello`` and finds its jobs again. The
  identity is derived from the secret with a key only this server process knows, so the
  server keeps no table of secrets that clients could grow.

Tokens are compared in constant time, every one of them on every attempt. Failed
attempts are slowed down per remote address (:class:`FailedTokenDelay`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

#: What a client secret looks like: what :func:`new_secret` makes (43 base64url chars),
#: and nothing shorter that could be guessed.
_SECRET = re.compile(r"[A-Za-z0-9_-]{32,128}")
_USER_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class Identity:
    """``key`` owns jobs and counts against limits; ``label`` is for logs (no secret)."""

    key: str
    label: str


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def is_secret(value: object) -> bool:
    return isinstance(value, str) and bool(_SECRET.fullmatch(value))


class Identities:
    """Turns a hello's token user and secret into an identity, and issues secrets."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)  # per process: secrets end with the server

    def resolve(self, user: str | None, secret: str | None) -> tuple[Identity, str]:
        """The identity of a client and the secret to hand it in ``welcome``: a named
        token's user, else the holder of ``secret`` (a new one when it brings none)."""
        if not is_secret(secret):
            secret = new_secret()
        assert secret is not None
        if user is not None:
            return Identity(f"user:{user}", user), secret
        digest = hmac.new(self._key, secret.encode(), hashlib.sha256).hexdigest()[:24]
        return Identity(f"secret:{digest}", f"anon-{digest[:8]}"), secret


class TokenBook:
    """The tokens a server accepts: one shared ``--token`` and/or named users' tokens."""

    def __init__(self, shared: str | None = None, named: dict[str, str] | None = None) -> None:
        self._tokens: list[tuple[bytes, str | None]] = []
        if shared:
            self._tokens.append((_token_bytes(shared), None))
        for user, token in (named or {}).items():
            self._tokens.append((_token_bytes(token), user))

    @property
    def required(self) -> bool:
        return bool(self._tokens)

    @property
    def users(self) -> list[str]:
        return [user for _, user in self._tokens if user is not None]

    def check(self, given: object) -> tuple[bool, str | None]:
        """(accepted, user): compares ``given`` with every token in constant time, so
        the time taken says nothing about which token came close."""
        if not self._tokens:
            return True, None
        candidate = _token_bytes(given) if isinstance(given, str) else b""
        found: tuple[bool, str | None] = (False, None)
        for token, user in self._tokens:
            if hmac.compare_digest(candidate, token) and isinstance(given, str):
                found = (True, user)
        return found

    @classmethod
    def load(cls, shared: str | None, tokens_file: Path | None) -> TokenBook:
        named = read_tokens_file(tokens_file) if tokens_file is not None else None
        return cls(shared, named)


def _token_bytes(token: str) -> bytes:
    # surrogatepass: a JSON "\udcff" escape decodes to a lone surrogate, which strict
    # UTF-8 refuses; such a token is simply wrong, it must not crash the connection.
    return token.encode("utf-8", "surrogatepass")


def read_tokens_file(path: Path) -> dict[str, str]:
    """``user token`` per line (``#`` comments, blank lines ignored): a team server's users.

    Raises ValueError naming the line and the fix for anything else, so a typo cannot
    quietly lock a user out or let a short token in.
    """
    users: dict[str, str] = {}
    seen: set[str] = set()
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        where = f"{path}:{number}"
        if len(parts) != 2 or not _USER_NAME.fullmatch(parts[0]):
            raise ValueError(
                f"{where}: write one 'USER TOKEN' per line (USER: letters, digits, _ . @ -)"
            )
        user, token = parts
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"{where}: {user}'s token is shorter than {MIN_TOKEN_LENGTH} characters; "
                "make one with: python -c 'import secrets; print(secrets.token_urlsafe(24))'"
            )
        if user in users or token in seen:
            raise ValueError(f"{where}: user {user!r} or their token appears twice")
        users[user] = token
        seen.add(token)
    if not users:
        raise ValueError(f"{path} names no users: write one 'USER TOKEN' per line")
    return users


class FailedTokenDelay:
    """How long to wait before answering a wrong token, per remote address.

    Each failure from an address doubles its delay (from ``first_s`` up to ``max_s``);
    a success resets it, and so does ``forget_s`` without failures. A guesser gets a few
    tries a minute instead of hundreds a second; a user who mistyped waits a moment.
    """

    def __init__(self, first_s: float = 0.25, max_s: float = 8.0, forget_s: float = 300.0):
        self.first_s, self.max_s, self.forget_s = first_s, max_s, forget_s
        self._failures: dict[str, tuple[int, float]] = {}

    def failed(self, address: str) -> float:
        """Record a failure; return the seconds to wait before answering it."""
        now = time.monotonic()
        self._forget_old(now)
        count, _ = self._failures.get(address, (0, now))
        self._failures[address] = (count + 1, now)
        return float(min(self.first_s * 2**count, self.max_s))

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)

    def _forget_old(self, now: float) -> None:
        stale = [a for a, (_, last) in self._failures.items() if now - last > self.forget_s]
        for address in stale:
            del self._failures[address]
