"""What the served models tell a user: errors they can fix, and notices on the way to an answer.

Every message is written for the person using the app or the API, so a front end shows it as it is.
"""

from __future__ import annotations

import logging
from typing import Protocol

LOGGER = logging.getLogger("siamese.serving")


class ServingError(ValueError):
    """A request that cannot be answered as asked; the message says what was wrong and what to do."""


class ModelChoiceError(ServingError):
    """No model was picked, or one the server does not offer."""


class InputError(ServingError):
    """An image slot that holds nothing, or an example image of another domain than the model's."""


class GalleryError(ServingError):
    """A gallery that cannot be built or searched: empty, over the cap, mislabelled, or from another model."""


class MapError(ServingError):
    """Too many images to place on a map, or too few to make one of their own."""


class Notices(Protocol):
    """Where notices go while a request is answered (a web page's pop-ups, a log)."""

    def info(self, message: str) -> None: ...

    def warning(self, message: str) -> None: ...


class CollectedNotices:
    """Notices kept in lists, in order (tests, scripts that report them at the end)."""

    def __init__(self):
        self.infos: list[str] = []
        self.warnings: list[str] = []

    def info(self, message: str) -> None:
        self.infos.append(message)

    def warning(self, message: str) -> None:
        self.warnings.append(message)


class LoggedNotices:
    """Notices written to the `siamese.serving` log: the default away from a web page."""

    def info(self, message: str) -> None:
        LOGGER.info(message)

    def warning(self, message: str) -> None:
        LOGGER.warning(message)
