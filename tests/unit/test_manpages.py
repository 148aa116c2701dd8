"""The manual pages and shell completions under dist/: generated, linted, and completing.

``python -m containerfs.manpage`` renders them from the argument parser and the
file catalogue; these tests fail when the checked-in files are not what the code
renders now, when a page does not name every file and option, when man, groff or
mandoc warn about a page, and when bash or zsh complete a command line wrongly.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from containerfs import manpage, manprose
from containerfs.cli import build_parser
from containerfs.completion import CompletionError, commands
from containerfs.engine import catalog
from containerfs.engine.catalog import Entry, Role
from containerfs.kernel.cgfiles import CONTROL_FILES

DIST = manpage.ROOT / "dist"
PAGES = [DIST / "man" / "containerfs.8", DIST / "man" / "containerfs.7"]
BASH = DIST / "completion" / "containerfs.bash"
ZSH = DIST / "completion" / "_containerfs"


# -- generated, not edited ----------------------------------------------------------


def test_checked_in_files_are_what_the_code_renders() -> None:
    stale = list(manpage.differing())
    assert not stale, f"{stale} differ from what the code renders: run {manpage.REGENERATE}"


def test_check_mode_names_a_file_that_drifted(tmp_path: Path) -> None:
    for rel, text in manpage.render_all().items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert manpage.main(["--check", "--root", str(tmp_path)]) == 0
    page7 = tmp_path / "dist/man/containerfs.7"
    page7.write_text(page7.read_text().replace("pids.max", "pids.limit"))
    assert list(manpage.differing(tmp_path)) == ["dist/man/containerfs.7"]
    assert manpage.main(["--check", "--root", str(tmp_path)]) == 1


def test_a_new_catalogue_file_without_prose_fails_the_rendering(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    new = Entry("container.weight", Role.SUBTREE, mode=catalog.Mode.WRITABLE)
    monkeypatch.setattr(catalog, "CONTAINER_FILES", (*catalog.CONTAINER_FILES, new))
    with pytest.raises(manpage.DriftError, match="container.weight: a file of the catalogue"):
        manpage.render_section7()


def test_prose_for_a_file_that_is_gone_fails_the_rendering(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(manprose.FILE_PROSE, "container.gone", "Nothing.")
    with pytest.raises(manpage.DriftError, match="container.gone"):
        manpage.render_section7()


def test_a_new_option_changes_the_pages_and_completions(monkeypatch: pytest.MonkeyPatch) -> None:
    def parser() -> argparse.ArgumentParser:
        p = build_parser()
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices["mount"].add_argument("--log-file", metavar="FILE", help="log there")
        return p

    monkeypatch.setattr(manpage, "build_parser", parser)
    texts = manpage.render_all()
    assert "\\-\\-log\\-file" in texts["dist/man/containerfs.8"]
    assert "--log-file" in texts["dist/completion/containerfs.bash"]
    assert "--log-file=" in texts["dist/completion/_containerfs"]


def test_a_positional_argument_the_completion_does_not_know_fails() -> None:
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    sub.choices["mount"].add_argument("extra")
    with pytest.raises(CompletionError, match="mount extra"):
        commands(p)


# -- what the pages say ---------------------------------------------------------------


def roff_names(text: str) -> str:
    """The page's text with roff's minus signs as plain hyphens."""
    return text.replace("\\-", "-")


def test_section_7_names_every_file_of_the_catalogue() -> None:
    text = roff_names(PAGES[1].read_text())
    names = [e.name for e in catalog.CONTAINER_FILES + catalog.INFO_FILES]
    names += [e.name for e in catalog.NAMESPACE_FILES if not e.name.startswith("user.max_")]
    names += [k.file for k in catalog.IPC_KNOBS + catalog.NET_KNOBS + catalog.PID_KNOBS]
    names += [k.sysctl for k in catalog.IPC_KNOBS + catalog.NET_KNOBS + catalog.PID_KNOBS]
    names += list(CONTROL_FILES)
    missing = [n for n in names if f"\\fB{n}\\fR" not in text]
    assert not missing
    assert "\\fBuser.max_\\fR\\fIKIND\\fR\\fB_namespaces\\fR" in text
    for section in ("NAME", "DESCRIPTION", "FILES", "ERRORS", "SEE ALSO"):
        assert f"\n.SH {section}\n" in text
    for name, _ in manprose.ERRORS7:
        assert f"\n.B {name}\n" in text


def test_section_8_names_every_command_and_option() -> None:
    text = roff_names(PAGES[0].read_text())
    parser = build_parser()
    for name, _, sub in manpage.subcommands(parser):
        assert f"\n.B containerfs {name}\n" in text
        for action in sub._actions:
            for option in action.option_strings:
                assert f"\\fB{option}\\fR" in text, option
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "EXIT STATUS", "FILES", "SEE ALSO"):
        assert f"\n.SH {section}\n" in text


# -- lint: what Debian's tools say ----------------------------------------------------


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (make deps installs it)")
    return path


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_groff_renders_without_warnings(page: Path) -> None:
    done = subprocess.run(
        [need("groff"), "-ww", "-z", "-man", str(page)], capture_output=True, text=True
    )
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_man_renders_without_warnings(page: Path) -> None:
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MANPAGER="cat", PAGER="cat")
    done = subprocess.run(
        [need("man"), "--warnings", "-l", str(page)], capture_output=True, text=True, env=env
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert "containerfs" in done.stdout and "SEE ALSO" in done.stdout


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_lexgrog_finds_the_name_section(page: Path) -> None:
    done = subprocess.run([need("lexgrog"), str(page)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f'{page}: "containerfs - ' in done.stdout


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_mandoc_lint_is_clean_style_included(page: Path) -> None:
    done = subprocess.run(
        [need("mandoc"), "-T", "lint", "-W", "all", str(page)], capture_output=True, text=True
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


# -- bash completion ----------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A fake containerfs mount (a path with a space, as /proc/self/mounts escapes it):
    containers web (with a child) and db, and a control file; and a work directory."""
    mnt = tmp_path / "mnt x"
    (mnt / "web" / "inner").mkdir(parents=True)
    (mnt / "db").mkdir()
    (mnt / "tasks").write_text("")
    (tmp_path / "work" / "sub").mkdir(parents=True)
    (tmp_path / "work" / "file.txt").write_text("")
    escaped = str(mnt).replace(" ", "\\040")
    (tmp_path / "mounts").write_text(
        f"proc /proc proc rw 0 0\ncontainerfs {escaped} fuse.containerfs rw 0 0\n"
    )
    return tmp_path


BASH_COMPLETION = Path("/usr/share/bash-completion/bash_completion")


def bash_complete(tree: Path, *words: str, library: bool = False) -> list[str]:
    """COMPREPLY for a command line whose last word is being completed, with the
    mount table read from the fake one (the real reader, another file); with
    ``library``, bash-completion loaded first, as in an interactive Debian shell."""
    script = f"""
{f"source {BASH_COMPLETION}" if library else ""}
source {BASH}
complete -p containerfs
eval "_orig$(declare -f _containerfs_mountpoints)"
_containerfs_mountpoints() {{ _orig_containerfs_mountpoints {tree}/mounts; }}
COMP_WORDS=("$@")
COMP_CWORD=$(($# - 1))
COMP_LINE="$*"
COMP_POINT=${{#COMP_LINE}}
_containerfs
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    done = subprocess.run(
        [need("bash"), "--norc", "--noprofile", "-c", script, "bash", *words],
        capture_output=True,
        text=True,
        cwd=tree / "work",
        env={"PATH": "/usr/bin:/bin", "HOME": str(tree)},
    )
    # bash-completion's own helpers call compopt, which says it runs outside a completion
    errors = [e for e in done.stderr.splitlines() if "not currently executing" not in e]
    assert done.returncode == 0 and not errors, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "complete -F _containerfs containerfs"
    return [line for line in lines[1:] if line]


def test_bash_completes_commands_and_global_options(tree: Path) -> None:
    assert bash_complete(tree, "containerfs", "") == ["mount", "exec", "tree", "top", "oci"]
    assert bash_complete(tree, "containerfs", "e") == ["exec"]
    assert bash_complete(tree, "containerfs", "t") == ["tree", "top"]
    assert bash_complete(tree, "containerfs", "-") == ["-h", "--help"]
    assert bash_complete(tree, "containerfs", "bogus", "") == []


def test_bash_offers_each_option_once_and_none_it_excludes(tree: Path) -> None:
    mount = ["containerfs", "mount"]
    every = [
        "--help",
        "--state-dir",
        "--subtree",
        "--busy-poll",
        "--metrics-listen",
        "--netns-prefix",
        "--debug",
    ]
    assert bash_complete(tree, *mount, "--") == every
    assert bash_complete(tree, *mount, "--debug", "--") == every[:-1]
    # --user and --preserve-credentials are a mutually exclusive group
    assert bash_complete(tree, "containerfs", "exec", "--user", "5", "--") == ["--help"]
    assert bash_complete(tree, "containerfs", "exec", "-u", "5", "-") == ["-h", "--help"]
    assert bash_complete(tree, "containerfs", "exec", "--preserve-credentials", "--u") == []


def test_bash_completes_the_oci_options_and_offers_nothing_for_runcs_words(tree: Path) -> None:
    oci = ["containerfs", "oci"]
    assert bash_complete(tree, *oci, "--") == ["--help", "--mount", "--parent", "--root"]
    assert bash_complete(tree, *oci, "--parent", "x", "--") == ["--help", "--mount", "--root"]
    assert bash_complete(tree, *oci, "") == []  # runc's command: no host commands offered
    assert bash_complete(tree, *oci, "create", "") == []


def test_bash_completes_directories_for_directory_arguments(tree: Path) -> None:
    for words in (
        ["--state-dir", ""],
        ["--state-dir", "=", ""],  # --state-dir=, split at = by COMP_WORDBREAKS
        ["--state-dir", "="],
        ["--state-dir", "=", "s"],
        [""],  # MOUNTPOINT
    ):
        assert bash_complete(tree, "containerfs", "mount", *words) == ["sub"], words
    assert bash_complete(tree, "containerfs", "mount", "--subtree", "") == []
    assert bash_complete(tree, "containerfs", "mount", str(tree / "work"), "") == []


def test_bash_completes_containers_under_the_mounted_containerfs(tree: Path) -> None:
    mnt = str(tree / "mnt x")
    assert sorted(bash_complete(tree, "containerfs", "exec", "")) == [f"{mnt}/db", f"{mnt}/web"]
    assert bash_complete(tree, "containerfs", "exec", "we") == [f"{mnt}/web"]
    assert bash_complete(tree, "containerfs", "exec", f"{mnt}/web/") == [f"{mnt}/web/inner"]
    assert bash_complete(tree, "containerfs", "exec", "--preserve-credentials", "d") == [
        f"{mnt}/db"
    ]
    # a name that is a directory here is a path: completed as one
    assert bash_complete(tree, "containerfs", "exec", "s") == ["sub"]


def test_bash_completes_the_command_to_run(tree: Path) -> None:
    assert "ls" in bash_complete(tree, "containerfs", "exec", "C", "l")
    assert "ls" in bash_complete(tree, "containerfs", "exec", "C", "--", "l")
    assert bash_complete(tree, "containerfs", "exec", "C", "-") == ["--"]
    assert bash_complete(tree, "containerfs", "exec", "C", "--", "ls", "") == ["file.txt", "sub"]
    # everything after CONTAINER is the command's: no containerfs option there
    assert bash_complete(tree, "containerfs", "exec", "C", "ls", "--p") == []


def test_with_bash_completion_the_command_completes_its_own_arguments(tree: Path) -> None:
    if not BASH_COMPLETION.exists():
        pytest.skip("bash-completion is not installed (make deps installs it)")
    words = ["containerfs", "exec", "C", "--", "ls", "--al"]
    assert bash_complete(tree, *words, library=True) == ["--all", "--almost-all"]
    words = ["containerfs", "exec", "C", "ls", "--al"]
    assert bash_complete(tree, *words, library=True) == ["--all", "--almost-all"]
    mnt = tree / "mnt x"
    assert sorted(bash_complete(tree, "containerfs", "exec", "", library=True)) == [
        f"{mnt}/db",
        f"{mnt}/web",
    ]


def test_bash_reads_containerfs_mounts_from_the_mount_table(tree: Path) -> None:
    script = f"source {BASH}; _containerfs_mountpoints {tree}/mounts; _containerfs_mountpoints"
    done = subprocess.run(
        [need("bash"), "--norc", "-c", f"{script} /dev/null"], capture_output=True, text=True
    )
    assert done.stdout.splitlines() == [str(tree / "mnt x"), "/run/containerfs"]


# -- zsh completion -------------------------------------------------------------------------


def test_zsh_completion_parses() -> None:
    done = subprocess.run([need("zsh"), "-n", str(ZSH)], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")


ZSH_DRIVER = r"""
zmodload zsh/zpty || exit 3
# Each step waits for its marker: zsh may drop input typed ahead of its prompt.
step() {{
    zpty -w z "$1; print -r -- step$2 >> {hits}"
    for i in {{1..100}}; do
        [[ $(tail -n 1 {hits} 2>/dev/null) == step$2 ]] && return
        sleep 0.05
    done
    exit 4
}}
zpty z zsh -f -i
step "PS1='> '; fpath=({dist} \$fpath); autoload -Uz compinit; compinit -u -D; source {script}" 1
# the real reader of the mount table, on the fake one
step 'functions[_orig_containerfs_mountpoints]=$functions[_containerfs_mountpoints]' 2
step '_containerfs_mountpoints() {{ _orig_containerfs_mountpoints {mounts}; }}' 3
# every candidate completion adds goes to the hits file
step 'compadd() {{ local -a h; builtin compadd -A h "$@"; print -rl -- $h >> {hits};
    builtin compadd "$@"; }}' 4
: > {hits}
zpty -w -n z {line}$'\t'
for i in {{1..60}}; do [[ -s {hits} ]] && break; sleep 0.05; done
sleep 0.2
zpty -w -n z $'\C-e\C-u'
step : 5
zpty -d z
"""


def zsh_complete(tree: Path, line: str) -> set[str]:
    """The candidates zsh's completion system offers for ``line`` (a real
    interactive zsh on a pseudo-terminal, compinit, TAB)."""
    hits = tree / "hits"
    hits.unlink(missing_ok=True)
    driver = ZSH_DRIVER.format(
        dist=ZSH.parent, script=ZSH, mounts=tree / "mounts", hits=hits, line="'" + line + "'"
    )
    done = subprocess.run(
        [need("zsh"), "-f", "-c", driver],
        capture_output=True,
        text=True,
        cwd=tree / "work",
        env={"PATH": "/usr/bin:/bin", "HOME": str(tree), "TERM": "dumb"},
        timeout=60,
    )
    if done.returncode == 3:
        pytest.skip("zsh has no zpty module")
    assert done.returncode == 0, f"zsh did not finish completing {line!r}: {done.returncode}"
    return set(hits.read_text().splitlines()) - {"", "step5"}


def test_zsh_completes_commands_options_and_containers(tree: Path) -> None:
    assert zsh_complete(tree, "containerfs ") == {"mount", "exec", "tree", "top", "oci"}
    assert zsh_complete(tree, "containerfs mount --") == {
        "--help",
        "--state-dir",
        "--subtree",
        "--busy-poll",
        "--metrics-listen",
        "--netns-prefix",
        "--debug",
    }
    assert zsh_complete(tree, "containerfs exec --user 5 --") == {"--help"}
    mnt = str(tree / "mnt x")
    assert {h.replace("\\ ", " ") for h in zsh_complete(tree, "containerfs exec ")} == {
        f"{mnt}/db",
        f"{mnt}/web",
    }
    assert zsh_complete(tree, "containerfs mount --state-dir ") == {"sub"}
    assert zsh_complete(tree, "containerfs exec C -- ls ") >= {"file.txt", "sub"}
