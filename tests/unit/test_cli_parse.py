"""CLI pieces that need no server: argument types, the error line, the parser."""

import argparse
import errno

import pytest

from emberfs.client.cli import build_parser
from emberfs.client.commands import COMMANDS, error_line
from emberfs.client.commands._base import octal_mode
from emberfs.client.commands.attrs import owner


@pytest.mark.parametrize("text,mode", [("755", 0o755), ("0755", 0o755), ("0o1777", 0o1777), ("7777", 0o7777), ("0", 0)])
def test_octal_mode(text, mode) -> None:
    assert octal_mode(text) == mode


@pytest.mark.parametrize("text", ["888", "u+x", "17777", "-1", ""])
def test_bad_octal_mode(text) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        octal_mode(text)


@pytest.mark.parametrize(
    "text,ids", [("1000", (1000, -1)), ("1000:100", (1000, 100)), (":100", (-1, 100)), ("0:0", (0, 0))]
)
def test_owner(text, ids) -> None:
    assert owner(text) == ids


@pytest.mark.parametrize("text", ["bob", "1:x", ":", "", "-5", "99999999999"])
def test_bad_owner(text) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        owner(text)


@pytest.mark.parametrize(
    "exc,line",
    [
        (FileNotFoundError(errno.ENOENT, "no entry 'nope'", "/nope"), "emberfs: ls: /nope: No such file or directory"),
        (OSError(errno.ENOTEMPTY, "not empty", "/d"), "emberfs: ls: /d: Directory not empty"),
        (OSError(errno.EXDEV, "x", "/a", None, "/b"), "emberfs: ls: /a -> /b: Invalid cross-device link"),
        (OSError(errno.EINVAL, "names cannot contain '/'", "/a"),
         "emberfs: ls: /a: Invalid argument (names cannot contain '/')"),
    ],
)
def test_error_line(exc, line) -> None:
    assert error_line("ls", exc) == line


def test_every_command_is_in_the_parser() -> None:
    parser = build_parser()
    for command in COMMANDS:
        assert command.name in parser.format_help()
    args = parser.parse_args(["--meta", "h:1", "df"])
    assert args.meta == "h:1" and args.run_command.name == "df"


def test_meta_default_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("EMBERFS_META", "10.0.0.1:7000")
    assert build_parser().parse_args(["ls"]).meta == "10.0.0.1:7000"
    monkeypatch.delenv("EMBERFS_META")
    assert build_parser().parse_args(["ls"]).meta == "127.0.0.1:9000"


@pytest.mark.parametrize(
    "text,meta", [("h:1", "h:1"), ("a:1,b:2", "a:1,b:2"), ("a:1 , b:2", "a:1,b:2"), (" b:2,a:1 ", "b:2,a:1")]
)
def test_meta_takes_a_list(text, meta, monkeypatch) -> None:
    assert build_parser().parse_args(["--meta", text, "ls"]).meta == meta
    monkeypatch.setenv("EMBERFS_META", text)
    assert build_parser().parse_args(["ls"]).meta == meta


@pytest.mark.parametrize("text,words", [("a:1,a:1", "names a:1 twice"), ("a:1,,b:2", "empty entry"),
                                        ("a:1;b:2", "is not HOST:PORT"), ("a:0", "outside 1..65535")])
def test_bad_meta_lists_are_usage_errors(text, words, capsys, monkeypatch) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["--meta", text, "ls"])
    assert info.value.code == 2 and words in capsys.readouterr().err
    monkeypatch.setenv("EMBERFS_META", text)  # a bad default is refused the same way
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ls"])


def test_health_takes_a_list_of_servers() -> None:
    args = build_parser().parse_args(["health", "a:1, b:2"])
    assert args.address == ("a:1", "b:2")
