"""NotationError: bad notation input, with where it is (file:line:col and a caret)."""

from __future__ import annotations


class NotationError(ValueError):
    """A formula that cannot be read or does not conform; says where (file:line:col)."""

    def __init__(self, message: str, text: str | None = None, pos: int | None = None,
                 source: str | None = None):
        self.message, self.text, self.pos, self.source = message, text, pos, source
        super().__init__(self._render())

    def _render(self) -> str:
        head = self.message
        if self.source:
            col = f":{self.pos + 1}" if self.pos is not None else ""
            head = f"{self.source}{col}: {self.message}"
        if self.text is None or self.pos is None:
            return head
        return f"{head}\n    {self.text}\n    {' ' * self.pos}^"

    def located(self, source: str, text: str | None = None, offset: int = 0) -> NotationError:
        """The same error placed in a file line (``text`` the whole line, ``offset`` of the formula)."""
        pos = None if self.pos is None else self.pos + offset
        return NotationError(self.message, text if text is not None else self.text, pos, source)


class DeriveError(NotationError):
    """An expression the deriver will not differentiate, with the reason (one line)."""

    def __init__(self, message: str):
        super().__init__(message)


__all__ = ["DeriveError", "NotationError"]
