"""Option types shared by commands: one spelling of `--format`, so help lists the choices and click refuses
any other value before a command runs (exit 1, like every usage error)."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

TextOrJson = Annotated[Literal["text", "json"], typer.Option("--format", help="Output format.")]
TextJsonOrMarkdown = Annotated[Literal["text", "json", "markdown"], typer.Option("--format", help="Output format.")]
