"""`python -m bot`'s parser, in process: which command each command line names, and `try`'s
arguments handed on untouched to its own parser."""

from __future__ import annotations

import pytest

from bot.__main__ import build_parser, main


@pytest.mark.parametrize(
    ("argv", "command"),
    [([], None), (["run"], "run"), (["check"], "check"), (["keygen"], "keygen"),
     (["rotate-keys"], "rotate-keys")],
)  # fmt: skip
def test_each_command_line_names_its_command(argv: list[str], command: str | None) -> None:
    args, rest = build_parser().parse_known_args(argv)
    assert (args.command, rest) == (command, [])


def test_everything_after_try_is_left_for_tryouts_own_parser() -> None:
    argv = ["try", "a fox", "--fast", "--followup", "warmer", "--with-file", "-h", "--verbose"]
    args, rest = build_parser().parse_known_args(argv)
    assert args.command == "try"
    assert rest == argv[1:]


def test_keygen_prints_only_a_key(capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography.fernet import Fernet

    assert main(["keygen"]) == 0
    out = capsys.readouterr()
    assert out.err == "" and out.out.count("\n") == 1
    Fernet(out.out.strip())


def test_help_is_an_alias_of_dash_dash_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: python -m bot")
