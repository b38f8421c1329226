"""`python -m bot rotate-keys`, and the audit `check` and the start will share: every stored
secret re-sealed under the first key of SECRET_KEYS, and each one no listed key opens named by
its workspace, never crashing and never losing it.

Rotating SECRET_KEYS: put a new key first (keeping the old one after it) on every instance,
run `rotate-keys`, then drop the old key. A value a token refresh replaced while this ran is
left as it is (the refresh sealed it under its instance's first key); one that no key opens is
left as it is too, so putting the right key back still recovers it.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.store import SealedValue, Store
from bot.workspaces.installations import workspace_label
from bot.workspaces.secrets import Secrets, SecretUnreadable


@dataclass(frozen=True)
class Unreadable:
    """A stored secret that no key in SECRET_KEYS opens: whose it is and what it is."""

    enterprise_id: str | None
    team_id: str | None
    what: str  # "bot token", "user token of U123", …

    @classmethod
    def of(cls, value: SealedValue) -> Unreadable:
        what = value.column.removeprefix("sealed_").replace("_", " ").replace(" url", " URL")
        if value.user_id:
            what += f" of {value.user_id}"
        return cls(value.enterprise_id, value.team_id, what)

    def line(self) -> str:
        return (
            f"{workspace_label(self.enterprise_id, self.team_id)}: its {self.what} opens with "
            "no key in SECRET_KEYS (put back the key it was sealed with, or install the app "
            "in that workspace again)"
        )


@dataclass(frozen=True)
class RotationReport:
    """What `rotate_keys` did: re-sealed, replaced meanwhile (left as they are), unreadable."""

    resealed: int
    replaced_meanwhile: int
    unreadable: tuple[Unreadable, ...]

    def lines(self) -> list[str]:
        if not (self.resealed or self.replaced_meanwhile or self.unreadable):
            return ["No stored secrets: nothing to re-encrypt."]
        lines = [f"Re-encrypted {self.resealed} stored secret(s) under the first key."]
        if self.replaced_meanwhile:
            lines.append(
                f"{self.replaced_meanwhile} changed while this ran (a token refresh) and were "
                "left as they are; run rotate-keys again once every instance lists the new "
                "key first."
            )
        lines += [f"✗ {item.line()}" for item in self.unreadable]
        if self.unreadable:
            lines.append(
                f"{len(self.unreadable)} stored secret(s) could not be opened and were left as "
                "they are: keep the old key in SECRET_KEYS until they are fixed."
            )
        return lines


def unreadable_secrets(store: Store, secrets: Secrets) -> list[Unreadable]:
    """Every stored secret no key in SECRET_KEYS opens, by workspace (for `check` and the
    start, which report them and go on)."""
    found = []
    for value in store.sealed_values():
        try:
            secrets.open(value.value)
        except SecretUnreadable:
            found.append(Unreadable.of(value))
    return found


def rotate_keys(store: Store, secrets: Secrets) -> RotationReport:
    """Every stored secret re-sealed under the first key, in one transaction; the ones no key
    opens are reported and left untouched."""
    changes: list[tuple[SealedValue, str]] = []
    unreadable: list[Unreadable] = []
    for value in store.sealed_values():
        try:
            changes.append((value, secrets.reseal(value.value)))
        except SecretUnreadable:
            unreadable.append(Unreadable.of(value))
    resealed = store.replace_sealed(changes) if changes else 0
    return RotationReport(resealed, len(changes) - resealed, tuple(unreadable))
