"""Request problems answered with 4xx and field-level messages."""

from __future__ import annotations


class BadInput(ValueError):
    """The request is wrong; ``problems`` holds one "field: message" line per problem."""

    def __init__(self, status: int, summary: str, problems: list[str]) -> None:
        self.status = status
        self.summary = summary
        self.problems = problems
        super().__init__(f"{summary}: " + "; ".join(problems))

    def body(self) -> dict[str, object]:
        return {"error": self.summary, "problems": self.problems}
