"""Lua sources, one file per script, loaded by name (readable and testable on their own)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache  # read once: give_back runs on the deduction path, for every compensation
def lua_source(name: str) -> str:
    """The text of scripts/<name>.lua."""
    return (files(__package__) / f"{name}.lua").read_text(encoding="utf-8")
