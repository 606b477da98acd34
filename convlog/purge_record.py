"""Signed purge records: the anchor chain's proof that an erasure was legitimate.

A purge deletes events that signed digests (``convlog.anchor``) may already have
anchored; without more, ``convlog verify`` would rightly call the gap tampering. So a
purge first signs what it is about to erase, in the same chain of digests, with the same
KMS key, in the same Object Lock bucket: a digest with no heads and one ``PurgeRecord``
per session (which session, through which seq, whole session or one user's content,
by whom, when). ``verify`` then reports an anchored head at or below ``through`` as
*erased by purge at T*, never as deleted -- while a table writer, who can delete events
and even forge the table's purge tombstones but cannot sign a digest, is still reported.

The record is written *before* the erasure (an interrupted purge leaves events a record
covers, which is not tampering; a purge that erased without a record would be), and
again after it when a racing writer made the purge erase further. It holds no content,
and the user of a content erasure only as a sha256.

Example:
    ```python
    records = [PurgeRecord("s1", through=12, mode="session", by=operator, at=now_iso())]
    sign_purges(store, records)
    ```
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from eventstore.events import now_iso

if TYPE_CHECKING:
    from .anchor import Digest, DigestStore

PurgeMode = Literal["session", "content"]


@dataclass(frozen=True)
class PurgeRecord:
    """One session's erasure as a signed digest states it.

    ``mode="session"``: every event up to ``through`` was deleted. ``mode="content"``:
    the content of the events up to ``through`` written by the user whose id hashes to
    ``user_sha256`` was erased (the events and the chain stay).

    Example:
        ```python
        record = PurgeRecord("s1", 12, "session", by="arn:aws:iam::1:user/ops", at=now_iso())
        ```
    """

    session_id: str
    through: int
    mode: PurgeMode
    by: str
    at: str
    user_sha256: str | None = None
    digest: int = field(default=0, compare=False)  # the number of the digest holding it

    def to_json(self) -> dict[str, Any]:
        """The record as it appears in a digest body."""
        body: dict[str, Any] = {"session": self.session_id, "through": self.through,
                                "mode": self.mode, "by": self.by, "at": self.at}
        if self.user_sha256 is not None:
            body["user_sha256"] = self.user_sha256
        return body

    @classmethod
    def parse(cls, data: Mapping[str, Any], digest: int) -> PurgeRecord:
        """Rebuild a record from a digest body (``KeyError``/``ValueError`` if malformed)."""
        mode = str(data["mode"])
        if mode not in ("session", "content"):
            raise ValueError(f"unknown purge mode {mode!r}")
        user = data.get("user_sha256")
        return cls(str(data["session"]), int(data["through"]),
                   "session" if mode == "session" else "content", str(data["by"]),
                   str(data["at"]), None if user is None else str(user), digest)

    def covers_content_of(self, user_id: str | None, seq: int) -> bool:
        """Whether this content erasure covers an event of ``user_id`` at ``seq``."""
        return (self.mode == "content" and seq <= self.through and user_id is not None
                and user_sha256(user_id) == self.user_sha256)


def user_sha256(user_id: str) -> str:
    """How a purge record names a user: the sha256 (hex) of the id, not the id."""
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()


def session_records(
    heads: Mapping[str, int], *, by: str, at: str | None = None
) -> list[PurgeRecord]:
    """Records of whole-session purges: ``heads`` maps each session to its last seq."""
    moment = at or now_iso()
    return [PurgeRecord(sid, seq, "session", by, moment) for sid, seq in sorted(heads.items())]


def content_records(
    heads: Mapping[str, int], user_id: str, *, by: str, at: str | None = None
) -> list[PurgeRecord]:
    """Records of content erasures of ``user_id`` in each session (up to its last seq)."""
    moment = at or now_iso()
    digest = user_sha256(user_id)
    return [PurgeRecord(sid, seq, "content", by, moment, digest)
            for sid, seq in sorted(heads.items())]


def sign_purges(store: DigestStore, records: list[PurgeRecord]) -> Digest | None:
    """Append one signed digest holding ``records`` (and no heads) to the chain.

    Requests: one ``ListObjectsV2``, one KMS ``Sign``, one ``PutObject``; nothing when
    ``records`` is empty.

    Raises:
        AnchorError: S3 or KMS refused (then purge nothing: the erasure would read as
            tampering).
    """
    if not records:
        return None
    return store.write([], link=store.latest_link(), purges=records)


class PurgeSigner:
    """Signs a purge's records before it erases, and again for what a racing writer added.

    Args:
        store: The digest store (``convlog anchor``'s bucket and key).
        by: Who purges (``operator_identity``).

    Example:
        ```python
        signer = PurgeSigner(store, by=operator_identity(sts))
        signer.sign(plan.heads)               # before: every session through its head
        await execute_purge(db, table, plan)  # raises plan.heads where writers raced
        signer.sign(plan.heads)               # after: only sessions erased further
        ```
    """

    def __init__(self, store: DigestStore, by: str) -> None:
        self.store = store
        self.by = by
        self.signed: dict[tuple[str, str | None], int] = {}

    def sign(self, heads: Mapping[str, int], *, user_id: str | None = None) -> Digest | None:
        """Sign whole-session purges (or, with ``user_id``, content erasures) of ``heads``.

        Sessions already signed through at least the same seq are left out; nothing is
        written when none is left.

        Raises:
            AnchorError: S3 or KMS refused.
        """
        todo = {sid: seq for sid, seq in heads.items()
                if seq > self.signed.get((sid, user_id), -1)}
        records = (content_records(todo, user_id, by=self.by) if user_id is not None
                   else session_records(todo, by=self.by))
        digest = sign_purges(self.store, records)
        self.signed.update({(sid, user_id): seq for sid, seq in todo.items()})
        return digest


def describe_erased(record: PurgeRecord) -> str:
    """``seq 1..N erased by purge at T (digest D, by X)`` for ``convlog verify``."""
    return (f"seq 1..{record.through} erased by purge at {record.at} "
            f"(digest {record.digest}, by {record.by})")


def describe_erased_content(erased: Mapping[int, PurgeRecord]) -> str:
    """``content of seq 1, 3 erased by purge at T (digest D)``, one clause per purge."""
    by_record: dict[PurgeRecord, list[int]] = {}
    for seq, record in sorted(erased.items()):
        by_record.setdefault(record, []).append(seq)
    return "; ".join(
        f"content of seq {', '.join(map(str, seqs))} erased by purge at {record.at} "
        f"(digest {record.digest})" for record, seqs in by_record.items())


def operator_identity(sts: Any) -> str:
    """Who is purging: the caller's ARN as STS names it (``"unknown"`` if it cannot)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return str(sts.get_caller_identity()["Arn"])
    except (BotoCoreError, ClientError, KeyError):
        return "unknown"
