"""DynamoDB item sizes and capacity units, computed with DynamoDB's documented rules.

Sizes follow "DynamoDB item sizes and formats" in the DynamoDB developer guide:

* a string counts its UTF-8 bytes, a binary its raw bytes (not the base64 on the wire);
* a number counts 1 byte per two significant digits (leading and trailing zeroes
  trimmed) plus 1 byte;
* a null or Boolean counts 1 byte;
* a list or map counts 3 bytes, plus 1 byte per element, plus its elements (map keys
  count their UTF-8 bytes);
* a set counts its elements;
* every attribute also counts the UTF-8 bytes of its name.

Capacity units follow the pricing rules for on-demand and provisioned tables:

* a write costs 1 WCU per started 1 KB of the larger of the old and the new item; a
  transactional write costs twice that;
* a read costs 1 RCU per started 4 KB when strongly consistent, half that when
  eventually consistent, twice that in a transaction; a ``Query`` (or a page of one) sums
  the sizes of the items it reads and rounds up once; every request costs at least one
  unit (half a unit for an eventually consistent read).

The figures are therefore deterministic: the same items cost the same units, on the
embedded endpoint or in AWS.

Example:
    ```python
    from eventstore.capacity import item_size, query_read_units, write_units

    item = {"pk": {"S": "SESSION#s1"}, "sk": {"S": "EVENT#000000000001"}}
    assert item_size(item) == 32
    assert write_units(item_size(item)) == 1
    assert query_read_units([item] * 200, consistent=True) == 2.0
    ```
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
ITEM_LIMIT_BYTES = 400 * 1024
LIST_MAP_OVERHEAD = 3
ELEMENT_OVERHEAD = 1

AttrValue = Mapping[str, Any]
Item = Mapping[str, AttrValue]


def _utf8(text: str) -> int:
    return len(text.encode("utf-8"))


def _binary(value: Any) -> int:
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value)
    if isinstance(value, str):  # base64 text, as on the wire
        return len(base64.b64decode(value))
    raise TypeError(f"binary value must be bytes or base64 text, got {type(value).__name__}")


def number_size(text: str) -> int:
    """Size of a DynamoDB number: 1 byte per two significant digits, plus 1 byte.

    Raises:
        ValueError: ``text`` is not a number.
    """
    try:
        number = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"not a DynamoDB number: {text!r}") from exc
    if not number.is_finite():
        raise ValueError(f"not a DynamoDB number: {text!r}")
    significant = len(number.normalize().as_tuple().digits)
    return math.ceil(significant / 2) + 1


def value_size(value: AttrValue) -> int:
    """Size in bytes of one attribute value (without its name).

    Raises:
        ValueError: ``value`` is not a DynamoDB attribute value.
    """
    if len(value) != 1:
        raise ValueError(f"attribute value must have exactly one type, got {list(value)}")
    ((kind, inner),) = value.items()
    if kind == "S":
        return _utf8(inner)
    if kind == "N":
        return number_size(inner)
    if kind == "B":
        return _binary(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(_utf8(s) for s in inner)
    if kind == "NS":
        return sum(number_size(n) for n in inner)
    if kind == "BS":
        return sum(_binary(b) for b in inner)
    if kind == "L":
        return LIST_MAP_OVERHEAD + sum(ELEMENT_OVERHEAD + value_size(v) for v in inner)
    if kind == "M":
        return LIST_MAP_OVERHEAD + sum(
            ELEMENT_OVERHEAD + _utf8(name) + value_size(v) for name, v in inner.items()
        )
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def item_size(item: Item) -> int:
    """Size in bytes of an item: its attribute names plus their values."""
    return sum(_utf8(name) + value_size(value) for name, value in item.items())


def write_units(size: int, *, transactional: bool = False) -> int:
    """Write capacity units of writing an item of ``size`` bytes (at least 1)."""
    units = max(1, math.ceil(size / WRITE_UNIT_BYTES))
    return units * 2 if transactional else units


def read_units(size: int, *, consistent: bool = True, transactional: bool = False) -> float:
    """Read capacity units of reading ``size`` bytes in one request (at least 1 unit)."""
    units = float(max(1, math.ceil(size / READ_UNIT_BYTES)))
    if transactional:
        return units * 2
    return units if consistent else units / 2


def put_write_units(
    new: Item | None, old: Item | None = None, *, transactional: bool = False
) -> int:
    """WCU of a put, update or delete: the larger of the old and the new item counts."""
    size = max(item_size(new) if new else 0, item_size(old) if old else 0)
    return write_units(size, transactional=transactional)


def query_read_units(items: Iterable[Item], *, consistent: bool) -> float:
    """RCU of one ``Query``/``Scan`` request that read ``items`` (sizes summed, then rounded)."""
    return read_units(sum(item_size(i) for i in items), consistent=consistent)


def get_read_units(item: Item | None, *, consistent: bool) -> float:
    """RCU of one ``GetItem``; a missing item still costs the minimum."""
    return read_units(item_size(item) if item else 0, consistent=consistent)
