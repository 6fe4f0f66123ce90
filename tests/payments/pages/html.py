"""A small reader of the pages' HTML for the tests: elements by id (attributes and text), and
every form control with its label."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join("".join(self.parts).split())


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.by_id: dict[str, Element] = {}
        self.all: list[Element] = []
        self._open: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.all.append(element)
        if "id" in element.attrs:
            assert element.attrs["id"] not in self.by_id, f"duplicate id {element.attrs['id']}"
            self.by_id[element.attrs["id"]] = element
        if tag not in _VOID:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index].tag == tag:
                del self._open[index:]
                return

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.parts.append(data)


class Page:
    def __init__(self, response: Any) -> None:
        self.html = response.content.decode()
        reader = _Reader()
        reader.feed(self.html)
        self._by_id = reader.by_id
        self.elements = reader.all

    def __contains__(self, element_id: str) -> bool:
        return element_id in self._by_id

    def __getitem__(self, element_id: str) -> Element:
        return self._by_id[element_id]

    def text(self, element_id: str) -> str:
        return self._by_id[element_id].text

    def controls_without_label(self) -> list[str]:
        """Inputs and selects (not hidden ones) that no <label for> names."""
        labelled = {e.attrs.get("for") for e in self.elements if e.tag == "label"}
        return [
            e.attrs.get("name", "?")
            for e in self.elements
            if e.tag in ("input", "select", "textarea")
            and e.attrs.get("type") != "hidden"
            and e.attrs.get("id") not in labelled
        ]
