"""Man pages generated from the argparse definitions render with man -l, name every option
of their subcommand; `crfs --help` lists every subcommand."""

import argparse
import os
import subprocess

import pytest

from crfs import cli, manpages, mount
from mountfs import CRFS


@pytest.fixture(scope="module")
def mandir(tmp_path_factory):
    out = tmp_path_factory.mktemp("man")
    result = subprocess.run(CRFS + ["manpages", str(out)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return out


def render(path):
    result = subprocess.run(["man", "--warnings", "-l", str(path)], capture_output=True,
                            text=True, timeout=60,
                            env={**os.environ, "MANWIDTH": "200", "MAN_KEEP_FORMATTING": ""})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return result.stdout


def visible():
    return manpages.subcommands(cli.build_parser())


def test_help_lists_every_subcommand():
    out = subprocess.run(CRFS + ["--help"], capture_output=True, text=True).stdout
    names = [n for names, _ in cli.SUBCOMMANDS for n in names if n != "manpages"]
    assert names == list(visible())
    for name in names:
        assert f"\n    {name} " in out or f"\n    {name}\n" in out, name
    assert "manpages" not in out


def test_one_page_per_subcommand(mandir):
    pages = sorted(str(p.relative_to(mandir)) for p in mandir.rglob("*.[18]"))
    assert pages == sorted(["man1/crfs.1", "man8/mount.crfs.8"]
                           + [f"man1/crfs-{n}.1" for n in visible()])


@pytest.mark.parametrize("name", list(visible()))
def test_subcommand_page_names_every_option(mandir, name):
    text = render(mandir / f"man1/crfs-{name}.1")
    sub, summary = visible()[name]
    assert text.split("\n")[0].split()[0] == f"CRFS-{name.upper()}(1)"
    assert " ".join(summary.split()) in " ".join(text.split())
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        for option in action.option_strings or [action.metavar]:
            assert option in text, (name, option)


def test_main_page_lists_commands(mandir):
    text = render(mandir / "man1/crfs.1")
    for name in visible():
        assert f"crfs {name}" in text and f"crfs-{name}(1)" in text


def test_mount_page_has_every_option(mandir):
    text = render(mandir / "man8/mount.crfs.8")
    assert "mount -t fuse.crfs STORE MOUNTPOINT" in text
    for option in mount.OUR_OPTIONS:
        assert f"\n       {option}" in text, option
    assert "noatime" in text
