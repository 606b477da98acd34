"""An anchor run: sign a digest of every session head changed since the last run.

``write_digest`` is what ``convlog anchor`` and the scheduled anchor function
(``stream_handlers.anchor``) run; ``changed_heads`` finds the heads with one paged
``Scan``; ``create_anchor_resources`` makes a local Object Lock bucket and signing key
for ``convlog serve`` and the tests. The digests themselves, their store and their
checks are in ``convlog.anchor``.

Example:
    ```python
    store = DigestStore(s3, kms, "convlog-digests-bucket", "alias/convlog-anchor", "agent_sessions")
    digest = await write_digest(EventLog(dynamodb, "agent_sessions"), store)
    ```
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from eventstore.errors import CorruptEventError
from eventstore.events import now_iso
from eventstore.keys import EVENT_PREFIX, SESSION_PREFIX, is_part_sk, whole_number
from eventstore.log import EventLog
from eventstore.reader import Head

from . import anchor
from .anchor import KEY_SPEC, AnchoredHead, Digest, DigestStore, Link


async def changed_heads(log: EventLog, since: str | None) -> list[AnchoredHead]:
    """The newest event of every session written at or after ``since`` (one paged ``Scan``).

    ``since`` is compared with the events' ``ts`` after moving it back ``SKEW_SECONDS``,
    so a writer whose clock is behind is still anchored.
    """
    params: dict[str, Any] = {
        "TableName": log.table_name,
        "ProjectionExpression": "pk, sk, seq, #h, #t",
        "ExpressionAttributeNames": {"#h": "hash", "#t": "ttl"},
        "FilterExpression": "begins_with(pk, :s) AND begins_with(sk, :e)",
        "ExpressionAttributeValues": {":s": {"S": SESSION_PREFIX}, ":e": {"S": EVENT_PREFIX}},
    }
    if since is not None:
        moment = datetime.fromisoformat(since.replace("Z", "+00:00")) - timedelta(
            seconds=anchor.SKEW_SECONDS)
        params["FilterExpression"] += " AND ts >= :since"
        params["ExpressionAttributeValues"][":since"] = {
            "S": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")}
    heads: dict[str, AnchoredHead] = {}
    async for item in log.db.items("scan", **params):
        if is_part_sk(item["sk"]["S"]):
            continue
        session_id = item["pk"]["S"][len(SESSION_PREFIX):]
        ttl = whole_number(item["ttl"]) if "ttl" in item else None
        try:
            head = Head.of_item(item)
        except CorruptEventError:
            head = None
        if head is None or ("ttl" in item and ttl is None):
            continue  # no writer makes it (a table writer can): verify names it
        if session_id not in heads or heads[session_id].seq < head.seq:
            heads[session_id] = AnchoredHead(session_id, head.seq, head.hash, ttl)
    return list(heads.values())


async def write_digest(log: EventLog, store: DigestStore) -> Digest:
    """Anchor now: one digest with every head changed since the newest digest.

    "Since" is the newest digest's S3 ``LastModified`` (the bucket's clock, not a
    writer's), moved back ``SKEW_SECONDS``; heads the newest digest already holds are
    left out. A digest is written even when nothing changed: it proves the anchor ran.
    Purge digests (``convlog.purge_record``) do not count as runs: "since" and the known
    heads come from the newest anchor digest before them. Requests: one
    ``ListObjectsV2``, one ``GetObject`` (the newest digest, plus one per purge digest
    after the last run), the ``Scan`` pages, one KMS ``Sign``, one ``PutObject``.
    """
    link = store.latest_link()
    created = now_iso()
    since: str | None = None
    known: set[AnchoredHead] = set()
    if link is not None:
        digest, since = store.read(link), link.modified
        while digest.purges and not digest.heads and digest.previous is not None:
            digest, since = store.read_dated(Link(digest.number - 1, digest.previous, ""))
        since = None if digest.purges and not digest.heads else since  # only purges
        known = set(digest.heads)
    heads = [h for h in await changed_heads(log, since) if h not in known]
    return store.write(heads, link=link, created=created)


def create_anchor_resources(
    s3: Any, kms: Any, bucket: str, *, retention_days: int = 1
) -> str:
    """Create an Object Lock bucket (compliance mode) and a signing key; return the key id.

    For the embedded endpoint (``convlog serve``) and tests; ``template.yaml`` creates
    the real ones. The bucket is reused if it exists.
    """
    def create_bucket() -> Any:
        try:
            return s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            return None

    DigestStore._call("s3:CreateBucket", create_bucket)
    DigestStore._call("s3:PutObjectLockConfiguration", lambda: s3.put_object_lock_configuration(
        Bucket=bucket, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": retention_days}},
        }))
    key = DigestStore._call("kms:CreateKey", lambda: kms.create_key(
        KeySpec=KEY_SPEC, KeyUsage="SIGN_VERIFY",
        Description="convlog digest signing key (local)"))
    return str(key["KeyMetadata"]["KeyId"])
