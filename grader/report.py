"""What the grader writes for people: safe text, the human report, CSV cells, the progress bar.

Everything a student's process produced (messages, exception texts, captured output) passes ``safe_text``
before it reaches a terminal, a JSON line, a gradebook row or a spreadsheet: control characters and lone
surrogates are escaped, and ``csv_cell`` keeps a spreadsheet from reading a cell as a formula.
"""

from __future__ import annotations

import sys

__all__ = ["safe_text", "csv_cell", "human", "progress", "emit"]


def safe_text(text, limit: int | None = None) -> str:
    """``text`` as printable, encodable text: control characters (terminal escapes, carriage returns) as
    ``\\xNN``, lone surrogates (which no UTF-8 file or database can store) as ``\\udNNN``; cut at
    ``limit``."""
    s = text if isinstance(text, str) else str(text)
    s = "".join(c if (c.isprintable() or c in "\n\t") and not 0xD800 <= ord(c) <= 0xDFFF
                else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}" for c in s)
    if limit is not None and len(s) > limit:
        s = s[: max(limit - 3, 0)] + "..."
    return s


# a spreadsheet reads a cell that starts with one of these as a formula (CSV injection)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "|", "%")


def csv_cell(value):
    """A value for a CSV file that a spreadsheet shows as text: numbers and booleans as they are, text made
    safe and prefixed with ``'`` when a spreadsheet would take it for a formula."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    s = safe_text(value)
    return "'" + s if s.startswith(_FORMULA_START) else s


def human(r, with_output: bool) -> str:
    """A ``NotebookResult`` as the lines a person reads: the score, then each test that lost points."""
    lines = [f"{safe_text(r.notebook)}: {r.assignment or '?'} {r.score:g}/{r.max_score:g}"]
    for t in r.tests:
        if not t["passed"]:
            msg = safe_text(t["message"]).replace("\n", "\n      ")
            lines.append(f"  {float(t['points']):g}/{float(t['max_points']):g} {t['name']}: {msg}")
    if r.error:
        lines.append("  error: " + safe_text(r.error).replace("\n", "\n      "))
    if with_output and r.output:
        lines.append("  student output:\n    | " + safe_text(r.output).replace("\n", "\n    | "))
    return "\n".join(lines)


def progress(total: int, enabled: bool):
    """A tqdm bar on stderr, or None (not a terminal, asked to be quiet, tqdm missing)."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    import shutil
    # a terminal may report 0 columns and rows (a pty that nobody sized: script, some CI runners); tqdm's own
    # probe then gives -1 rows and draws nothing, so the size comes from shutil, which falls back to 100x24
    cols, rows = shutil.get_terminal_size((100, 24))
    return tqdm(total=total, file=sys.stderr, unit="nb", ncols=min(max(cols, 40), 120), nrows=max(rows, 2),
                desc="grading")


def emit(out, line: str, bar=None) -> None:
    """Write one result line to ``out``; with a progress bar on the terminal, clear the bar first and draw it
    again below the line, so that lines and bar never run into each other."""
    if bar is None:
        out.write(line + "\n")
        out.flush()
        return
    with bar.external_write_mode(file=out):
        out.write(line + "\n")
        out.flush()
