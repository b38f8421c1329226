"""Forgetting a workspace (bot/store/workspaces.py): the list of per-workspace tables is held
against the schema, every row of the workspace goes and nobody else's, and on SQLite not a byte
of its prompts stays in the file or the WAL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.store import (
    FORGOTTEN_FOR_SECONDS,
    NOT_PER_WORKSPACE,
    PER_WORKSPACE,
    NewPost,
    PreviewKind,
    Spend,
    Store,
    workspace_digest,
)
from bot.store.installations import InstalledBot, InstallerGrant

T0 = 1_763_000_000.0
A, B = "T0AAAAAAA", "T0BBBBBBB"
A_PROMPT = "zebra crossing at dawn, for the Aardvark launch"
B_PROMPT = "quiet harbour with gulls, for Bluebird"


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    yield s
    s.close()


def tables(store: Store) -> dict[str, set[str]]:
    """Every table of the schema with its columns, on either database."""
    if store.dialect == "sqlite":
        names = [
            r["name"]
            for r in store._rows("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not str(r["name"]).startswith("sqlite_")
        ]
        return {n: set(store.db[n].columns_dict) for n in names}
    rows = store._rows(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema()"
    )
    found: dict[str, set[str]] = {}
    for r in rows:
        found.setdefault(str(r["table_name"]), set()).add(str(r["column_name"]))
    return found


def test_every_table_is_listed_as_per_workspace_or_not(store: Store) -> None:
    """A table added later must say whether a workspace's rows live in it: otherwise an
    uninstall would leave them behind without anyone noticing."""
    schema = tables(store)
    listed = [rows.table for rows in PER_WORKSPACE]
    assert len(listed) == len(set(listed))
    unlisted = set(schema) - set(listed) - set(NOT_PER_WORKSPACE)
    assert not unlisted, (
        f"say in bot/store/workspaces.py whether these hold a workspace's rows: {unlisted}"
    )
    assert set(listed) <= set(schema)
    with_team = {name for name, columns in schema.items() if "team_id" in columns}
    assert with_team <= set(listed), "a table with a team_id column holds a workspace's rows"
    for rows in PER_WORKSPACE:  # found by its own team_id, or by its jobs'
        assert "team_id" in schema[rows.table] or "job_id" in schema[rows.table]


def fill(store: Store, team: str, prompt: str, channel: str) -> int:
    """A workspace's life: a job with a followup, a post, usage, a preview, handled
    deliveries, an installation with a person's grant."""
    spend = Spend(team, "U0SAME", "2025-11-13", "2025-11")  # the same user id in both
    created = store.create_job(
        team_id=team, channel_id=channel, requester="U0SAME", response_url=None,
        request={"prompt": prompt}, sandbox=True, now=T0, spend=spend,
        event_keys=[f"form:{team}-{channel}"],
    )  # fmt: skip
    assert created is not None
    job_id, _ = created
    thread = f"{T0 + job_id}"  # each job its own card, even in a shared channel
    store.record_card(job_id, thread, channel, "new", "digest", T0)
    reply = f"{T0 + job_id}.5"
    store.add_followup(
        job_id, {"prompt": f"{prompt}, warmer"}, "U0SAME", channel, reply, T0 + 1,
        event_keys=[f"msg:{team}:{channel}:{reply}"], spend=spend,
    )  # fmt: skip
    post = NewPost("reply_error", {"text": f"about {prompt}"})
    store.record_reply_error(job_id, [f"event:Ev{team}{channel}"], post, T0 + 2)
    store.save_preview(
        token=f"tok-{team}-{channel}", kind=PreviewKind.NEW_JOB, team_id=team, channel_id=channel,
        user_id="U0SAME", now=T0, request={"prompt": prompt},
    )  # fmt: skip
    for n in range(5):  # rows rewritten again and again, as the poller does
        store.set_due(job_id, T0 + n)
        store.claim_job(job_id, T0 + n)
        store.release(job_id, None, T0 + n)
    store.save_installation(
        InstalledBot(
            None, team, T0, team_name=f"{team} name", bot_user_id="U0BOT",
            sealed_bot_token="sealed", installer="U0SAME",
        ),
        InstallerGrant(None, team, "U0SAME", T0),
    )  # fmt: skip
    return job_id


def rows_naming(store: Store, text: str) -> list[tuple[str, dict[str, object]]]:
    """Every row of every table with `text` in any column, read as text."""
    found = []
    for table in tables(store):
        for row in store._rows(f"SELECT * FROM {table}"):
            if any(text in str(value) for value in row.values()):
                found.append((table, row))
    return found


def test_forgetting_a_workspace_deletes_its_rows_everywhere_and_keeps_the_others(
    store: Store,
) -> None:
    a_job = fill(store, A, A_PROMPT, "C0SHARED")
    b_job = fill(store, B, B_PROMPT, "C0SHARED")  # a Slack Connect channel: the same id
    assert rows_naming(store, A) and rows_naming(store, "Aardvark")

    forgotten = store.forget_workspace(A, T0 + 10)

    assert rows_naming(store, A) == []
    assert rows_naming(store, "Aardvark") == []
    assert store.job(a_job) is None and store.runs(a_job) == []
    assert forgotten.rows["jobs"] == 1 and forgotten.rows["runs"] == 2
    assert {"events", "usage_counts", "previews", "installations"} <= set(forgotten.rows)
    # The other workspace, with the same user id and channel, keeps everything.
    assert store.job(b_job) is not None and len(store.runs(b_job)) == 2
    assert store.usage_of(B, "U0SAME", "2025-11-13", "2025-11").today == 2
    assert store.installed_bot(None, B) is not None
    assert rows_naming(store, "Bluebird")
    # What stays of A is a digest of its id, for late deliveries, and only for a while.
    assert store.forgotten_digests(T0 + 10) == {workspace_digest(A)}
    assert store.teams_with_rows() == {B}
    assert store.forget_workspace(A, T0 + 20).rows == {}  # again: nothing more, no error
    assert store.drop_forgotten_before(T0 + 21 - FORGOTTEN_FOR_SECONDS) == 0
    assert store.drop_forgotten_before(T0 + 21) == 1
    assert store.forgotten_digests(T0 + 21) == frozenset()


def test_installing_again_lifts_the_forgetting(store: Store) -> None:
    fill(store, A, A_PROMPT, "C0A")
    store.forget_workspace(A, T0)
    assert store.forgotten_digests(T0) == {workspace_digest(A)}
    fill(store, A, A_PROMPT, "C0A")  # installed again (and used)
    assert store.forgotten_digests(T0) == frozenset()


@pytest.mark.sqlite_only
def test_no_byte_of_a_forgotten_workspace_stays_in_the_sqlite_file_or_its_wal(
    database_url: str,
) -> None:
    path = Path(database_url.removeprefix("sqlite:///"))
    store = Store(database_url)
    try:
        fill(store, A, A_PROMPT, "C0A")
        fill(store, B, B_PROMPT, "C0B")
        store.backend.checkpoint()  # some of it in the file, some in the WAL
        fill(store, A, A_PROMPT + " again", "C0A2")
        store.forget_workspace(A, T0 + 10)

        def on_disk() -> bytes:
            wal = path.with_name(path.name + "-wal")
            return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")

        raw = on_disk()
        assert b"Aardvark" not in raw and A.encode() not in raw
        assert b"Bluebird" in raw  # the reading sees what is there
    finally:
        store.close()
