"""Spreadsheet-safe cells, both ways: export puts an apostrophe before a cell a spreadsheet
would run as a formula (and before a leading apostrophe), import takes exactly that one off,
so a file goes out and comes back unchanged."""

from __future__ import annotations

# A cell starting with one of these is run as a formula by spreadsheets; export puts an
# apostrophe before it (and before a leading apostrophe, so import can undo exactly that).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
ESCAPE = "'"


def spreadsheet_safe(value: object) -> str:
    """Neutralise a cell a spreadsheet would run as a formula (and escape a leading apostrophe
    the same way, so `from_spreadsheet` gives back exactly the original text)."""
    text = "" if value is None else str(value)
    return ESCAPE + text if text.startswith((*FORMULA_PREFIXES, ESCAPE)) else text


def from_spreadsheet(text: str) -> str:
    """Undo export's formula neutralisation: drop the apostrophe export put before a formula
    character or before a leading apostrophe, and nothing else."""
    if text.startswith(ESCAPE) and text[1:2] and text[1] in (*FORMULA_PREFIXES, ESCAPE):
        return text[1:]
    return text
