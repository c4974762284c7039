"""Options chosen by name: one registry per kind (architecture, loss, sampler, ...).

The command line's choices and help text come from the registries, so they cannot drift from the code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")


class Registry(Generic[Item]):
    """Named items of one kind, each with a one-line description, in the order they were registered."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Item] = {}
        self._descriptions: dict[str, str] = {}

    def register(self, name: str, description: str) -> Callable[[Item], Item]:
        """A decorator that files the decorated object under `name`."""

        def add(item: Item) -> Item:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            self._descriptions[name] = description
            return item

        return add

    def add(self, name: str, item: Item, description: str) -> Item:
        """File `item` under `name` (for objects that are not defined by a def or class statement)."""
        return self.register(name, description)(item)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

    def get(self, name: str) -> Item:
        if name not in self._items:
            raise ValueError(f"{self.kind} must be one of {self.names}, got {name!r}")
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def describe(self) -> str:
        """'name (description), ...': the help text for a command-line option."""
        return ", ".join(f"{name} ({self._descriptions[name]})" for name in self._items)
