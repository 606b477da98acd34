"""The orphan sweeper of the payload bucket: objects that no live item points to.

An event's (or snapshot's) S3 object is written *before* the conditional put that
commits it, so a commit that loses the race, or a writer that dies in between, leaves
an object no item references; so does an item whose TTL has passed when its object's
lifecycle class is longer (or absent). ``sweep_orphans`` removes them:

1. list the bucket's ``sessions/`` objects with their ``LastModified``;
2. read the ``obj`` attribute of every live item (one consistent paged ``Scan``,
   ``eventstore.payloads.referenced_keys``);
3. an unreferenced object older than ``min_age_seconds`` is an orphan: a younger one
   may belong to a commit still in flight. Listing *before* scanning keeps any object
   whose event committed before the scan;
4. each orphan is checked again with ``HeadObject`` just before the delete (a writer
   committing the same content re-writes the object first, which makes it young),
   then deleted, a thousand a request.

``convlog sweep`` (with ``--dry-run``) and the scheduled ``SweeperFunction`` of
``template.yaml`` (``stream_handlers.sweeper``) both run this.

Example:
    ```python
    report = await sweep_orphans(wrap_client(dynamodb), "agent_sessions",
                                 PayloadStore(s3, "my-convlog-payloads"), dry_run=True)
    print(report.orphans)
    ```
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from eventstore.client import DynamoClient
from eventstore.errors import PayloadMissingError
from eventstore.payloads import (
    OBJECT_PREFIX,
    SWEEP_MIN_AGE_SECONDS,
    PayloadStore,
    referenced_keys,
)

DELETE_BATCH = 1000


@dataclass
class SweepReport:
    """What one sweep found and did.

    Attributes:
        objects: Objects listed under ``sessions/``.
        referenced: Distinct keys live items point to.
        orphans: Unreferenced keys old enough to delete (deleted unless a dry run).
        young: Unreferenced objects kept because they are younger than the minimum age.
        deleted: How many orphans were deleted (0 in a dry run).
    """

    objects: int = 0
    referenced: int = 0
    orphans: list[str] = field(default_factory=list)
    young: int = 0
    deleted: int = 0


async def sweep_orphans(
    db: DynamoClient, table: str, store: PayloadStore, *,
    min_age_seconds: float = SWEEP_MIN_AGE_SECONDS, dry_run: bool = False,
    now: float | None = None, on_scanned: Callable[[int], None] | None = None,
    on_deleted: Callable[[int], None] | None = None,
) -> SweepReport:
    """Find (and unless ``dry_run`` delete) the bucket's orphaned payload objects.

    Args:
        db: DynamoDB client adapter of the convlog table.
        table: The convlog table whose items reference the objects.
        store: The payload bucket.
        min_age_seconds: Keep unreferenced objects younger than this.
        dry_run: Report the orphans, delete nothing.
        now: Clock (epoch seconds).
        on_scanned: Called with the number of items each ``Scan`` page read.
        on_deleted: Called with the number of objects each delete request removed.

    Returns:
        The report; ``orphans`` sorted.
    """
    at = time.time() if now is None else now
    listed = {key: modified async for key, modified in store.keys(OBJECT_PREFIX)}
    live = await referenced_keys(db, table, now=at, on_scanned=on_scanned)
    report = SweepReport(objects=len(listed), referenced=len(live))
    for key in sorted(set(listed) - live):
        if at - listed[key] >= min_age_seconds:
            report.orphans.append(key)
        else:
            report.young += 1
    if not dry_run:
        report.deleted = await delete_orphans(store, report.orphans,
                                              min_age_seconds=min_age_seconds,
                                              on_deleted=on_deleted)
    return report


async def delete_orphans(
    store: PayloadStore, keys: list[str], *, min_age_seconds: float,
    on_deleted: Callable[[int], None] | None = None,
) -> int:
    """Delete ``keys`` that are still older than ``min_age_seconds``; return how many.

    Each key is checked with ``HeadObject`` first: an object written again since it was
    listed (a commit of the same content) is young again and kept.
    """
    total = 0
    for start in range(0, len(keys), DELETE_BATCH):
        chunk = keys[start:start + DELETE_BATCH]
        batch = [key for key in chunk
                 if await _still_old(store, key, time.time() - min_age_seconds)]
        total += await store.delete(batch)
        if on_deleted is not None:
            on_deleted(len(chunk))
    return total


async def _still_old(store: PayloadStore, key: str, cutoff: float) -> bool:
    """Whether the object is still there and was last written before ``cutoff``."""
    try:
        head = await store.s3.call("head_object", Bucket=store.bucket, Key=key)
    except PayloadMissingError:
        return False
    return float(head["LastModified"].timestamp()) <= cutoff
