"""The steps of a purge, in their one safe order: what ``convlog purge`` and the console run.

A confirmed ``PurgePlan`` (``convlog.purge``) is carried out by ``carry_out_purge``:

1. With ``erase_content_of`` (``--shared content``), the sessions the user shares with
   others are not deleted: the purge reads and checks them all (``prepare_erasure``: a
   schema 1 or malformed event stops it before anything is signed or written), signs
   what it will erase (``convlog.purge_record``),
   erases only that user's content (``convlog.erase_content``), then signs again through
   the seq each erasure reached (a racing writer may have appended meanwhile). Those
   sessions leave the plan.
2. What is left is deleted whole: signed first, deleted (``execute_purge``: events,
   views, tool-cache entries, payload objects, usage marks), then signed again for what
   racing writers made it erase further.
3. When the content erasure left nothing to delete, the user's usage totals are dropped
   (a whole-session purge does that itself).

Signing comes before erasing, every time: if the anchor's signer refuses (``AnchorError``
from S3 or KMS), nothing of that step is erased. Without a signer (no digests in use)
the steps are the same, unsigned.

Example:
    ```python
    plan = await plan_purge(db, table, user_id="alice")
    outcome = await carry_out_purge(db, table, plan, erase_content_of="alice")
    print(outcome.deleted, [e.session_id for e in outcome.erased])
    ```
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from eventstore.user_usage import forget_usage

from .erase_content import ContentErasure, apply_erasure, prepare_erasure
from .purge import PurgePlan, execute_purge

if TYPE_CHECKING:
    from eventstore.client import DynamoClient
    from eventstore.payloads import PayloadStore

    from .anchor import Digest
    from .purge_record import PurgeSigner

Signed = Callable[["Digest", "str | None"], None]  # a digest signed, and for whose content


@dataclass
class PurgeOutcome:
    """What a purge did: the plan it deleted whole, the erasures, the signed digests."""

    plan: PurgePlan  # the sessions deleted whole (shared ones left out with erase_content_of)
    deleted: int = 0  # table items deleted
    erased: list[ContentErasure] = field(default_factory=list)
    digests: list[int] = field(default_factory=list)  # numbers of the purge records signed


def remaining_plan(plan: PurgePlan, erase_content_of: str | None) -> PurgePlan:
    """The part of ``plan`` deleted whole: all of it, or its unshared sessions."""
    return plan.without(set(plan.shared())) if erase_content_of is not None else plan


async def carry_out_purge(
    db: DynamoClient,
    table: str,
    plan: PurgePlan,
    *,
    erase_content_of: str | None = None,
    signer: PurgeSigner | None = None,
    payloads: PayloadStore | None = None,
    on_signed: Signed | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> PurgeOutcome:
    """Sign, erase and delete what ``plan`` holds, in that order (see the module).

    Args:
        db: The table's client.
        table: The table.
        plan: A confirmed plan (``plan_purge``).
        erase_content_of: Erase only this user's content in the sessions it shares with
            others (``None``: shared sessions are deleted whole).
        signer: Signs purge records into the anchor digests (``None``: no digests).
        payloads: The payload bucket (``None``: S3 objects are left to ``convlog sweep``).
        on_signed: Called with each digest signed, and the user for a content erasure.
        on_batch: Called with the number of items of each deleted batch.

    Raises:
        AnchorError: The signer was refused; what that step would erase is intact.
    """
    outcome = PurgeOutcome(remaining_plan(plan, erase_content_of))

    async def sign(heads: Mapping[str, int], user: str | None = None) -> None:
        if signer is None:
            return
        digest = await asyncio.to_thread(signer.sign, heads, user_id=user)
        if digest is not None:
            outcome.digests.append(digest.number)
            if on_signed is not None:
                on_signed(digest, user)

    shared = sorted(plan.shared()) if erase_content_of is not None else []
    if erase_content_of is not None and shared:
        prepared = [await prepare_erasure(db, table, sid, erase_content_of, payloads=payloads)
                    for sid in shared]  # every session read and checked before the record
        await sign({sid: plan.heads[sid] for sid in shared}, erase_content_of)
        for one in prepared:
            outcome.erased.append(await apply_erasure(db, table, one, payloads=payloads))
        await sign({e.session_id: e.through for e in outcome.erased}, erase_content_of)
    rest = outcome.plan
    if rest.empty:
        if erase_content_of is not None:  # only content went: the user's totals go too
            await forget_usage(db, table, {}, user_id=erase_content_of)
        return outcome
    await sign(rest.heads)
    outcome.deleted = await execute_purge(db, table, rest, on_batch=on_batch,
                                          payloads=payloads)
    await sign(rest.heads)  # sessions a racing writer made it erase further
    return outcome
