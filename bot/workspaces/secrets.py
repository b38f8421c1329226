"""Secrets at rest: what the app must keep (Slack tokens, refresh tokens, Motion keys) is stored
only as Fernet ciphertext, under `SECRET_KEYS`.

Why Fernet (cryptography's): authenticated encryption, so a value that was tampered with or
sealed under a key no longer listed is refused rather than read as garbage; and `MultiFernet`
gives rotation for free — the first key seals, any listed key opens, `rotate()` re-seals under
the first. A `Secrets` object never shows a key or a secret in its repr, and its one error,
`SecretUnreadable`, says what failed and how to fix it, never what the value was.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretUnreadable(Exception):
    """A stored secret that no key in SECRET_KEYS opens (sealed under a key since dropped, or
    damaged). The message never holds the value."""

    def __init__(self, what: str = "a stored secret") -> None:
        self.what = what
        super().__init__(
            f"{what} cannot be opened with any key in SECRET_KEYS: put back the key it was "
            "sealed with (any position after the first), or set the secret again"
        )


def new_key() -> str:
    """A fresh Fernet key (32 random bytes, url-safe base64), for `python -m bot keygen`."""
    return Fernet.generate_key().decode("ascii")


class Secrets:
    """Seals and opens secrets with the keys of SECRET_KEYS: the first seals, any opens."""

    __slots__ = ("_fernet", "_key_count")

    def __init__(self, keys: Sequence[str]) -> None:
        """`keys`: Fernet keys, the one to seal with first. Raises ValueError, naming the
        position of a key Fernet refuses but never the key itself."""
        if not keys:
            raise ValueError("SECRET_KEYS holds no key: `python -m bot keygen` prints one")
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                raise ValueError(
                    f"SECRET_KEYS entry {position} is not a Fernet key (32 url-safe base64 "
                    "bytes): `python -m bot keygen` prints one"
                ) from None
        self._fernet = MultiFernet(fernets)
        self._key_count = len(fernets)

    def __repr__(self) -> str:
        return f"Secrets({self._key_count} key{'s' if self._key_count != 1 else ''})"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Secrets cannot be pickled: its keys stay in this process")

    def seal(self, text: str) -> str:
        """`text` encrypted under the first key: ASCII, safe in any text column."""
        return self._fernet.encrypt(text.encode("utf-8")).decode("ascii")

    def open(self, token: str, what: str = "a stored secret") -> str:
        """The text sealed in `token`, with whichever listed key opens it, or
        `SecretUnreadable` (naming `what`, never the value)."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError, ValueError, TypeError):
            raise SecretUnreadable(what) from None

    def reseal(self, token: str, what: str = "a stored secret") -> str:
        """`token` sealed again under the first key (for `rotate-keys`); `SecretUnreadable` when
        no listed key opens it."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError, ValueError, TypeError):
            raise SecretUnreadable(what) from None
