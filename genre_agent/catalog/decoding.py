"""A file's lines decoded as UTF-8 without raising, each bad line a RowProblem (re-exported
by ``genre_agent.catalog.items``)."""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path

from genre_agent.errors import RowProblem


class DecodedLines:
    """A file's lines as text (ends kept), read as UTF-8 without ever raising on bad bytes.

    A UTF-8 byte-order mark (Excel's "CSV UTF-8") is dropped. A line that is not valid UTF-8
    adds a RowProblem to ``problems`` and is given with U+FFFD in place of the bad bytes, so a
    reader goes on and every bad line is reported. A UTF-16/32 file is one problem, no lines.
    Lines end at \\n, \\r\\n or \\r, as in text mode; ``line`` is the 1-based number of
    the last line given.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[RowProblem] = []
        self.line = 0
        self._lines = self._read()

    def __iter__(self) -> DecodedLines:
        return self

    def __next__(self) -> str:
        return next(self._lines)

    def drain(self) -> list[RowProblem]:
        """The problems found since the last call."""
        out, self.problems = self.problems, []
        return out

    def _read(self) -> Iterator[str]:
        with self.path.open("rb") as fh:
            for chunk in fh:
                for raw in chunk.splitlines(keepends=True):
                    self.line += 1
                    if self.line == 1:
                        if raw.startswith(codecs.BOM_UTF8):
                            raw = raw[len(codecs.BOM_UTF8) :]
                        elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                            self.problems.append(
                                RowProblem(
                                    str(self.path),
                                    1,
                                    "<encoding>",
                                    "the file is UTF-16 or UTF-32 (byte-order mark); save it "
                                    "as UTF-8",
                                )
                            )
                            return
                    try:
                        yield raw.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        text = raw.decode("utf-8", errors="replace")
                        self.problems.append(
                            RowProblem(
                                str(self.path),
                                self.line,
                                "<encoding>",
                                f"not valid UTF-8: byte(s) {raw[exc.start : exc.end].hex(' ')} at "
                                f"byte {exc.start + 1} of the line (save the file as UTF-8)",
                                text.rstrip("\r\n"),
                            )
                        )
                        yield text
