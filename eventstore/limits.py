"""Caps on what one ``add_items`` may carry, checked before anything is written.

Three caps, all settings of ``DynamoDBSession``:

* ``max_add_bytes``: the size of the add's canonical JSON (decompressed). The default,
  32 MiB, is sized to the projector's 512 MB Lambda: decoding one event holds its
  compressed bytes, its JSON text and the parsed objects (about three times the JSON),
  so a batch can carry a few capped events and the state they change;
* ``max_items_per_add``: how many items one add may hold;
* ``max_depth``: how deeply an item may nest (lists and objects; 255 at most).

The byte cap is checked twice: first as a lower bound walked over the items without
serialising them (a 200 MB string is refused before a 200 MB copy is made), then
exactly, on the canonical JSON. Readers (``get_items``, the projector, ``verify``)
never decompress a payload beyond the cap either: ``bounded_inflate`` stops at it.

Example:
    ```python
    from eventstore.limits import Limits

    limits = Limits(max_add_bytes=8 * 1024 * 1024, max_items_per_add=500)
    limits.check_items(items)  # PayloadTooLargeError / InvalidItemError before any write
    ```
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import CorruptEventError, InvalidInputError, InvalidItemError, PayloadTooLargeError
from .events import MAX_NESTING

MIB = 1024 * 1024
DEFAULT_MAX_ADD_BYTES = 32 * MIB
DEFAULT_MAX_ITEMS_PER_ADD = 10_000
DEFAULT_MAX_DEPTH = MAX_NESTING  # 255: what validate_items accepts at most
# A snapshot holds the whole state, not one add; reads refuse to inflate one beyond this.
DEFAULT_MAX_STATE_BYTES = 256 * MIB
ENV_MAX_ADD_BYTES = "CONVLOG_MAX_ADD_BYTES"
_INFLATE_STEP = 4 * MIB


@dataclass(frozen=True)
class Limits:
    """The caps on one ``add_items`` (and on what readers inflate).

    Args:
        max_add_bytes: Canonical JSON bytes of one add, before compression.
        max_items_per_add: Items in one add.
        max_depth: Nesting depth of an item (a flat object is depth 1).

    Example:
        ```python
        session = DynamoDBSession("s", client, "t", limits=Limits(max_add_bytes=4 * MIB))
        ```
    """

    max_add_bytes: int = DEFAULT_MAX_ADD_BYTES
    max_items_per_add: int = DEFAULT_MAX_ITEMS_PER_ADD
    max_depth: int = DEFAULT_MAX_DEPTH

    def __post_init__(self) -> None:
        for name in ("max_add_bytes", "max_items_per_add", "max_depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidInputError(f"{name} must be a positive int, got {value!r}")

    @classmethod
    def from_env(cls) -> Limits:
        """The default caps, with ``CONVLOG_MAX_ADD_BYTES`` overriding the byte cap."""
        value = os.environ.get(ENV_MAX_ADD_BYTES, "").strip()
        return cls(max_add_bytes=int(value)) if value.isdigit() else cls()

    def check_items(self, items: Sequence[Any]) -> None:
        """Refuse an add that breaks a cap, without serialising it.

        Raises:
            PayloadTooLargeError: Too many items, or more bytes than ``max_add_bytes``.
            InvalidItemError: An item nests deeper than ``max_depth``.
        """
        if len(items) > self.max_items_per_add:
            raise PayloadTooLargeError(
                f"add_items got {len(items):,} items; one add may hold at most "
                f"{self.max_items_per_add:,} (max_items_per_add) -- split it into "
                "several add_items calls"
            )
        size = 0
        stack: list[tuple[Any, int]] = [(item, 1) for item in items]
        while stack:
            value, depth = stack.pop()
            if isinstance(value, str):
                size += len(value) + 2
            elif isinstance(value, Mapping):
                self._check_depth(depth)
                size += 2
                for key, inner in value.items():
                    size += (len(key) if isinstance(key, str) else 1) + 4
                    stack.append((inner, depth + 1))
            elif isinstance(value, list | tuple):
                self._check_depth(depth)
                size += 2
                stack.extend((inner, depth + 1) for inner in value)
            else:
                size += 1
            if size > self.max_add_bytes:
                raise self.too_large(size, exact=False)

    def check_encoded(self, raw_size: int) -> None:
        """Refuse an add whose canonical JSON is larger than ``max_add_bytes``.

        Raises:
            PayloadTooLargeError: ``raw_size`` exceeds the cap.
        """
        if raw_size > self.max_add_bytes:
            raise self.too_large(raw_size, exact=True)

    def too_large(self, size: int, *, exact: bool) -> PayloadTooLargeError:
        """The error for an add of ``size`` bytes (``exact``: measured, else a lower bound)."""
        measured = f"{size:,} bytes" if exact else f"more than {size:,} bytes"
        return PayloadTooLargeError(
            f"add_items is {measured} of JSON; one add may carry at most "
            f"{self.max_add_bytes:,} bytes (max_add_bytes, sized to the projector's "
            "memory) -- split it into several add_items calls, or raise max_add_bytes "
            f"together with the projector's memory and its {ENV_MAX_ADD_BYTES}"
        )

    def _check_depth(self, depth: int) -> None:
        if depth > self.max_depth:
            raise InvalidItemError(
                f"an item nests deeper than {self.max_depth} levels (max_depth; "
                f"JSON items may nest {MAX_NESTING} at most)"
            )


def bounded_inflate(body: bytes, max_bytes: int, where: str = "payload") -> bytes:
    """Decompress a zlib ``body``, refusing to produce more than ``max_bytes``.

    Raises:
        CorruptEventError: The body is not zlib data, or inflates beyond ``max_bytes``
            (a payload no writer with these caps could have stored).
    """
    inflater = zlib.decompressobj()
    out = bytearray()
    pending = body
    try:
        while not inflater.eof:
            room = max_bytes + 1 - len(out)
            chunk = inflater.decompress(pending, min(room, _INFLATE_STEP))
            pending = inflater.unconsumed_tail
            out += chunk
            if len(out) > max_bytes:
                raise CorruptEventError(
                    f"{where} inflates to more than {max_bytes:,} bytes, the readers' cap "
                    f"(raise it with {ENV_MAX_ADD_BYTES} if a writer's max_add_bytes is higher)"
                )
            if not chunk and not pending:
                break
    except zlib.error as exc:
        raise CorruptEventError(f"{where} is not valid zlib data: {exc}") from exc
    if not inflater.eof:
        raise CorruptEventError(f"{where} is truncated zlib data")
    return bytes(out)
