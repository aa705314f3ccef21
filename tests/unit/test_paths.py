"""Name and path validation shared by client and server."""

import pytest

from emberfs.common import errors as e
from emberfs.common import paths

BAD_NAMES = [("", e.InvalidArgument), (".", e.InvalidArgument), ("..", e.InvalidArgument),
             ("a/b", e.InvalidArgument), ("a\x00b", e.InvalidArgument), ("x" * 256, e.NameTooLong),
             ("é" * 128, e.NameTooLong), ("\udc80", e.InvalidArgument)]


@pytest.mark.parametrize("name,exc", BAD_NAMES)
def test_bad_names(name, exc) -> None:
    with pytest.raises(exc):
        paths.check_name(name)


@pytest.mark.parametrize("name", ["a", "x" * 255, "é" * 127, "with space", ".hidden", "..."])
def test_good_names(name) -> None:
    assert paths.check_name(name) == name


@pytest.mark.parametrize(
    "path,parts",
    [("/", []), ("/a", ["a"]), ("/a/b/", ["a", "b"]), ("//a//b", ["a", "b"])],
)
def test_split_path(path, parts) -> None:
    assert paths.split_path(path) == parts


@pytest.mark.parametrize(
    "path,exc",
    [("a/b", e.InvalidArgument), ("", e.InvalidArgument), ("/a/../b", e.InvalidArgument),
     ("/a/./b", e.InvalidArgument), ("/a\x00", e.InvalidArgument), ("/" + "a/" * 2100, e.NameTooLong)],
)
def test_bad_paths(path, exc) -> None:
    with pytest.raises(exc):
        paths.split_path(path)


def test_split_parent() -> None:
    assert paths.split_parent("/a/b/c") == (["a", "b"], "c")
    with pytest.raises(e.InvalidArgument):
        paths.split_parent("/")


@pytest.mark.parametrize("mode,ok", [(0, True), (0o7777, True), (0o10000, False), (-1, False), (True, False)])
def test_modes(mode, ok) -> None:
    if ok:
        assert paths.check_mode(mode) == mode
    else:
        with pytest.raises(e.InvalidArgument):
            paths.check_mode(mode)
