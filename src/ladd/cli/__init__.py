"""The `ladd` command line: options → typed configs → `ladd.api`. One module per command group;
`options` declares every shared option once, `main` composes the groups and turns errors into
one line and an exit code (`ladd.core.errors`)."""

from ladd.cli.main import app, main

__all__ = ["app", "main"]
