"""What counts as text a person would type and PostgreSQL can hold (ids, names, login ids)."""

from __future__ import annotations


def storable(value: str) -> bool:
    """UTF-8 encodable, no control characters."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True
