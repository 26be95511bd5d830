"""Lua sources, one file per script, loaded by name (readable and testable on their own)."""

from __future__ import annotations

from importlib.resources import files


def lua_source(name: str) -> str:
    """The text of scripts/<name>.lua."""
    return (files(__package__) / f"{name}.lua").read_text(encoding="utf-8")
