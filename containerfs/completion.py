"""Shell completion for bash and zsh, rendered from the argument parser.

The subcommands, their options, which options exclude which (aliases and
mutually exclusive groups) and which take a value all come from
``cli.build_parser``; what to offer for each positional argument and option
value is said here, and rendering fails for an argument this module does not
know, so a new one cannot be forgotten.  ``python -m containerfs.manpage``
writes the scripts to ``dist/completion/``.

Container paths for ``containerfs exec``: a path is completed as directories
(every directory of a containerfs mount is a container); an empty or bare word
also as the containers of every mounted containerfs (``fuse.containerfs`` in
``/proc/self/mounts``, else the default mount point).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from .defaults import DEFAULT_MOUNTPOINT

#: What to offer for each positional argument, by (command, dest): "directory",
#: "container", "command" (the command and its arguments; last), or "word" (nothing
#: offered: runc's command line after ``containerfs oci``).
POSITIONAL_KINDS: dict[tuple[str, str], str] = {
    ("mount", "mountpoint"): "directory",
    ("exec", "container"): "container",
    ("exec", "argv"): "command",
    ("tree", "path"): "container",
    ("top", "path"): "container",
    ("oci", "argv"): "word",
}

#: What to offer for an option's value, by its metavar; "word" (anything: nothing
#: offered) otherwise.
VALUE_KINDS: dict[str, str] = {"DIR": "directory"}


class CompletionError(Exception):
    """The parser has an argument this module does not know how to complete."""


@dataclass(frozen=True)
class Option:
    strings: tuple[str, ...]
    value: str | None  # None for a flag; else "directory" or "word"
    metavar: str
    help: str
    group: tuple[str, ...]  # the option strings it excludes (itself included)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    options: tuple[Option, ...]
    positionals: tuple[tuple[str, str], ...]  # (metavar, kind)


def _options(parser: argparse.ArgumentParser) -> tuple[Option, ...]:
    """The parser's options; each excludes its aliases and its mutually exclusive
    group, as argparse would refuse them (or take the last one given)."""
    order = [s for a in parser._actions for s in a.option_strings]
    groups: dict[str, set[str]] = {}
    for action in parser._actions:
        if action.option_strings:
            joined = set(action.option_strings)
            groups.update(dict.fromkeys(action.option_strings, joined))
    for mutex in parser._mutually_exclusive_groups:
        joined = set().union(*(groups[s] for a in mutex._group_actions for s in a.option_strings))
        for s in joined:
            groups[s] = joined
    out = []
    for action in parser._actions:
        if not action.option_strings:
            continue
        metavar = _metavar(action)
        group = tuple(sorted(groups[action.option_strings[0]], key=order.index))
        value = None if action.nargs == 0 else VALUE_KINDS.get(metavar, "word")
        out.append(Option(tuple(action.option_strings), value, metavar, action.help or "", group))
    return tuple(out)


def commands(parser: argparse.ArgumentParser) -> tuple[Command, ...]:
    """The subcommands, with what to complete for each of their arguments."""
    out: list[Command] = []
    seen: set[tuple[str, str]] = set()
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help or "" for a in action._choices_actions}
        for name, sub in action.choices.items():
            positionals = []
            for a in sub._actions:
                if a.option_strings:
                    continue
                seen.add((name, a.dest))
                kind = POSITIONAL_KINDS.get((name, a.dest))
                if kind is None:
                    raise CompletionError(
                        f"{name} {a.dest}: no POSITIONAL_KINDS entry in containerfs/completion.py"
                    )
                positionals.append((_metavar(a), kind))
            if any(k == "command" for _, k in positionals[:-1]):
                raise CompletionError(f"{name}: a command argument must come last")
            out.append(Command(name, helps.get(name, ""), _options(sub), tuple(positionals)))
    extra = set(POSITIONAL_KINDS) - seen
    if extra:
        raise CompletionError(f"POSITIONAL_KINDS names arguments that are gone: {extra}")
    return tuple(out)


def _metavar(action: argparse.Action) -> str:
    return action.metavar if isinstance(action.metavar, str) else action.dest.upper()


# -- bash ------------------------------------------------------------------------------

_HELPERS = r"""
# The mount points of containerfs file systems, one per line: fuse.containerfs
# lines of FILE (default /proc/self/mounts), with the kernel's octal escapes
# (\040) undone; the default mount point when none is mounted.
_containerfs_mountpoints()
{
    local src dir type rest found=
    while read -r src dir type rest; do
        if [[ $type == fuse.containerfs ]]; then
            printf '%b\n' "${dir//\\/\\0}"
            found=1
        fi
    done < "${1:-/proc/self/mounts}"
    [[ -n $found ]] || printf '%s\n' @MOUNTPOINT@
}
"""

_BASH = r"""# bash completion for containerfs(8)                       -*- shell-script -*-
# Generated by `python -m containerfs.manpage` from the argument parser
# (containerfs/cli.py) and containerfs/completion.py: do not edit.
@HELPERS@
# Add the directories matching $1 (a path) to COMPREPLY.
_containerfs_dirs()
{
    local dir
    while IFS= read -r dir; do
        COMPREPLY+=("$dir")
    done < <(compgen -d -- "$1")
}

# CONTAINER of `containerfs exec`: a path is completed as directories; an empty
# word (outside a containerfs) or a bare name that matches no directory here as
# the containers of every mounted containerfs.
_containerfs_containers()
{
    local cur=$1 mnt inside=
    compopt -o filenames 2>/dev/null
    if [[ $cur == [/.~]* ]]; then
        _containerfs_dirs "$cur"
        return
    fi
    local -a mnts=()
    while IFS= read -r mnt; do
        mnts+=("$mnt")
        [[ $PWD == "$mnt" || $PWD == "$mnt"/* ]] && inside=1
    done < <(_containerfs_mountpoints)
    if [[ -n $cur || -n $inside ]]; then
        _containerfs_dirs "$cur"
        ((${#COMPREPLY[@]})) && return
    fi
    for mnt in "${mnts[@]}"; do
        _containerfs_dirs "${mnt%/}/$cur"
    done
}

# Sets REPLY to what the value of option $2 of command $1 is: directory, word,
# or empty for an option that takes none.
_containerfs_value_kind()
{
    case $1:$2 in
@VALUE_CASES@
    *) REPLY= ;;
    esac
}

_containerfs()
{
    local cur=${COMP_WORDS[COMP_CWORD]} word cmd= pending= npos=0 rest_at=0 i
    local -a options=() groups=() positionals=() used=()
    COMPREPLY=()
    # `--opt=value`: COMP_WORDBREAKS makes `=` a word of its own.
    [[ $cur == = ]] && cur=
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if [[ -z $cmd ]]; then
            [[ $word == -* ]] && continue
            cmd=$word
            case $cmd in
@COMMAND_CASES@
            *) return ;;
            esac
            continue
        fi
        ((rest_at)) && continue # the command and its arguments
        if [[ -n $pending ]]; then # an option's value, or the `=` before it
            [[ $word == = ]] || pending=
            continue
        fi
        if [[ ${positionals[npos]} == command ]]; then
            rest_at=$i # where the command starts, after an optional `--`
            [[ $word == -- ]] && rest_at=$((i + 1))
            continue
        fi
        [[ $word == -- ]] && continue
        if [[ $word == -* ]]; then
            used+=("$word")
            _containerfs_value_kind "$cmd" "$word"
            pending=$REPLY
            continue
        fi
        ((npos++))
    done
    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W '@GLOBAL_OPTIONS@' -- "$cur"))
        else
            COMPREPLY=($(compgen -W '@COMMANDS@' -- "$cur"))
        fi
        return
    fi
    if [[ -n $pending ]]; then
        if [[ $pending == directory ]]; then
            compopt -o filenames 2>/dev/null
            _containerfs_dirs "$cur"
        fi
        return
    fi
    if ((rest_at == 0)) && [[ ${positionals[npos]} == command ]]; then
        # The first word after the last argument: the command, or the `--` before it.
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W '--' -- "$cur"))
            return
        fi
        rest_at=$COMP_CWORD
    fi
    if ((rest_at)); then
        if ((COMP_CWORD == rest_at)); then
            COMPREPLY=($(compgen -c -- "$cur"))
        elif declare -F _command_offset >/dev/null; then
            _command_offset "$rest_at" # bash-completion's: complete as CMD would
        else
            compopt -o filenames 2>/dev/null
            COMPREPLY=($(compgen -f -- "$cur"))
        fi
        return
    fi
    if [[ $cur == -* ]]; then
        local -a offer=()
        local opt group skip
        for opt in "${options[@]}"; do
            skip=
            for group in "${groups[@]}"; do
                [[ " $group " == *" $opt "* ]] || continue
                for word in "${used[@]}"; do
                    [[ " $group " == *" $word "* ]] && skip=1
                done
            done
            [[ -z $skip ]] && offer+=("$opt")
        done
        COMPREPLY=($(compgen -W "${offer[*]}" -- "$cur"))
        return
    fi
    case ${positionals[npos]} in
    directory)
        compopt -o filenames 2>/dev/null
        _containerfs_dirs "$cur"
        ;;
    container) _containerfs_containers "$cur" ;;
    esac
}
complete -F _containerfs containerfs
"""


def _shell_words(words: list[str]) -> str:
    for w in words:
        if not all(c.isalnum() or c in "-_.+" for c in w):
            raise CompletionError(f"{w!r}: not a plain word for a shell script")
    return " ".join(words)


def render_bash(parser: argparse.ArgumentParser) -> str:
    cmds = commands(parser)
    value_cases, command_cases = [], []
    for c in cmds:
        for o in c.options:
            if o.value is not None:
                pattern = " | ".join(f"{c.name}:{s}" for s in o.strings)
                value_cases.append(f"    {pattern}) REPLY={o.value} ;;")
        groups = list(dict.fromkeys(o.group for o in c.options))  # once each, in order
        options = [s for o in c.options for s in o.strings]
        command_cases += [
            f"                {c.name})",
            f"                    options=({_shell_words(options)})",
            "                    groups=("
            + " ".join(f"'{_shell_words(list(g))}'" for g in groups)
            + ")",
            f"                    positionals=({_shell_words([k for _, k in c.positionals])})",
            "                    ;;",
        ]
    global_options = [s for o in _options(parser) for s in o.strings]
    return (
        _BASH.replace("@HELPERS@", _HELPERS.replace("@MOUNTPOINT@", DEFAULT_MOUNTPOINT))
        .replace("@VALUE_CASES@", "\n".join(value_cases))
        .replace("@COMMAND_CASES@", "\n".join(command_cases))
        .replace("@GLOBAL_OPTIONS@", _shell_words(global_options))
        .replace("@COMMANDS@", _shell_words([c.name for c in cmds]))
    )


# -- zsh -------------------------------------------------------------------------------

_ZSH = r"""#compdef containerfs
# zsh completion for containerfs(8).
# Generated by `python -m containerfs.manpage` from the argument parser
# (containerfs/cli.py) and containerfs/completion.py: do not edit.
@HELPERS@
# CONTAINER of `containerfs exec`: as in the bash completion, a path is completed
# as directories, an empty or bare word also as the containers of each mount.
_containerfs_containers()
{
    local mnt inside= ret=1
    local -a mnts found
    if [[ $PREFIX == [/.~]* ]]; then
        _path_files -/
        return
    fi
    mnts=(${(f)"$(_containerfs_mountpoints)"})
    for mnt in $mnts; do
        [[ $PWD == $mnt || $PWD == $mnt/* ]] && inside=1
    done
    if [[ -n $PREFIX || -n $inside ]]; then
        _path_files -/ && return 0
    fi
    for mnt in $mnts; do
        found+=(${mnt%/}/$PREFIX*(N/))
    done
    (( $#found )) && compadd -U -S / -- $found && ret=0
    return ret
}

# CMD [ARGS...] of `containerfs exec`: the last argument says how many positional
# words come before it (_arguments puts its own options before that).
_containerfs_command()
{
    local skip=${@[-1]}
    shift $skip words
    (( CURRENT -= skip ))
    if [[ $words[1] == -- ]] && (( CURRENT > 1 )); then
        shift words
        (( CURRENT-- ))
    fi
    if (( CURRENT == 1 )) && [[ $PREFIX == -* ]]; then
        compadd -- --
        return
    fi
    _normal
}

_containerfs()
{
    local curcontext=$curcontext state state_descr line ret=1
    typeset -A opt_args
    _arguments -C \
@GLOBAL_SPECS@
        '1:command:->command' \
        '*::argument:->argument' && ret=0
    case $state in
    command)
        local -a commands=(
@COMMAND_LIST@
        )
        _describe -t commands command commands && ret=0
        ;;
    argument)
        curcontext=${curcontext%:*:*}:containerfs-$words[1]:
        case $words[1] in
@COMMAND_SPECS@
        esac
        ;;
    esac
    return ret
}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _containerfs "$@"
else
    compdef _containerfs containerfs
fi
"""


def _q(text: str) -> str:
    """A zsh single-quoted word."""
    return "'" + text.replace("'", "'\\''") + "'"


def _short_help(text: str) -> str:
    for cut in ("; ", " ("):
        text = text.split(cut)[0]
    return text.replace("\\", "").replace("[", "\\[").replace("]", "\\]")


def _zsh_option(o: Option) -> list[str]:
    excl = "(- *)" if "--help" in o.strings else "(" + " ".join(o.group) + ")"
    desc = "[" + _short_help(o.help) + "]"
    if o.value is None:
        spellings = list(o.strings)
        arg = ""
    else:
        spellings = [s + ("=" if s.startswith("--") else "+") for s in o.strings]
        action = "_files -/" if o.value == "directory" else " "
        arg = ":" + o.metavar.replace(":", "\\:") + ":" + action
    return [_q(excl + s + desc + arg) for s in spellings]


def _zsh_positional(index: int, metavar: str, kind: str, optional: bool) -> str:
    if kind == "command":  # zsh hands it every positional word: skip those before
        return _q(f"*::command:_containerfs_command {index - 1}")
    action = {"directory": "_files -/", "container": "_containerfs_containers", "word": " "}[kind]
    return _q(f"{index}:{':' if optional else ''}{metavar}:{action}")


def render_zsh(parser: argparse.ArgumentParser) -> str:
    cmds = commands(parser)
    specs = []
    for c in cmds:
        sub = next(
            p
            for a in parser._actions
            if isinstance(a, argparse._SubParsersAction)
            for n, p in a.choices.items()
            if n == c.name
        )
        optional = {_metavar(a): a.nargs == "?" for a in sub._actions if not a.option_strings}
        words = [w for o in c.options for w in _zsh_option(o)]
        words += [
            _zsh_positional(i + 1, mv, kind, optional[mv])
            for i, (mv, kind) in enumerate(c.positionals)
        ]
        flags = "-s -S -A '-*'" if any(k == "command" for _, k in c.positionals) else "-s"
        specs.append(f"        {c.name})")
        specs.append(f"            _arguments {flags} \\")
        specs += [f"                {w} \\" for w in words]
        specs[-1] = specs[-1][: -len(" \\")] + " && ret=0"
        specs.append("            ;;")
    global_specs = [f"        {w} \\" for o in _options(parser) for w in _zsh_option(o)]
    command_list = [f"            {_q(c.name + ':' + _short_help(c.help))}" for c in cmds]
    return (
        _ZSH.replace("@HELPERS@", _HELPERS.replace("@MOUNTPOINT@", DEFAULT_MOUNTPOINT))
        .replace("@GLOBAL_SPECS@", "\n".join(global_specs))
        .replace("@COMMAND_LIST@", "\n".join(command_list))
        .replace("@COMMAND_SPECS@", "\n".join(specs))
    )
