"""MkDocs hooks (``hooks:`` in mkdocs.yml).

The command-line reference (docs/reference/cli.md) is generated at build time from ``lang_sam.cli``'s
own argparse parsers, not copied by hand: each subcommand's ``--help`` is produced by calling
``lang_sam.cli.main([..., "--help"])``, the same code path a user's ``lang-sam ... --help`` takes, so a
new subcommand (e.g. ``track``) or flag appears in the site as soon as the parser has it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re

MARKER = "<!-- cli-reference -->"
#: A Sphinx role left in a docstring, as Markdown renders it: ``:class:`~x.Y``` -> ":class:<code>~x.Y</code>".
SPHINX_ROLE = re.compile(r":(?:class|func|meth|data|attr|mod|exc|obj):<code>~?([^<]*)</code>")


def _help(argv: list[str]) -> str:
    """What ``lang-sam *argv --help`` prints on stdout, at a fixed width (80 columns)."""
    from lang_sam.cli import main

    out = io.StringIO()
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            try:
                main([*argv, "--help"])
            except SystemExit:
                pass
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    text = out.getvalue().rstrip()
    if not text:
        raise RuntimeError(f"`lang-sam {' '.join(argv)} --help` printed nothing")
    return text


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    """``(name, one-line help)`` of each subcommand of ``parser``, in the order they were added."""
    for action in parser._actions:  # argparse keeps its subparsers here; there is no public accessor
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return [(name, helps.get(name, "")) for name in action.choices]
    return []


def cli_reference() -> str:
    """The Markdown of the CLI reference: the top-level help, then one section per subcommand."""
    from lang_sam.cli import build_parser

    parser = build_parser()
    subs = _subcommands(parser)
    parts = ["## `lang-sam`", "", "```text", _help([]), "```", ""]
    if subs:
        parts += ["| command | what it does |", "| --- | --- |"]
        parts += [f"| [`lang-sam {name}`](#lang-sam-{name}) | {text} |" for name, text in subs]
        parts.append("")
    for name, text in subs:
        parts += [f"## `lang-sam {name}`", "", text[:1].upper() + text[1:] + ".", "",
                  "```text", _help([name]), "```", ""]
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - MkDocs' signature
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, cli_reference())
    return markdown


def on_page_content(html: str, page, config, files) -> str:  # noqa: ARG001 - MkDocs' signature
    """The docstrings use Sphinx roles (``:class:`Foo```); show them as plain code, ``Foo``."""
    return SPHINX_ROLE.sub(lambda m: f"<code>{m[1].rsplit('.', 1)[-1] if m[0].find('~') >= 0 else m[1]}</code>", html)
