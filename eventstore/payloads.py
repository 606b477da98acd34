"""The payload store: large event and snapshot payloads in S3, addressed by their digest.

DynamoDB items stop at 400 KB. A payload whose stored form (compressed when that helps)
is larger than ``threshold`` goes to S3 under
``sessions/<sha256 of the session id>/<payload digest>``, where the digest is the
sha256 of the payload's canonical JSON -- the same ``payload_sha256`` the event item
carries and the hash chain covers. The object is written *before* the conditional put
that commits the event, so a committed event never points at a missing object; a
commit that loses leaves an object no event points at, which ``sweep`` removes once it
is older than any commit in flight. Reads check what they fetch against the digest and
never inflate beyond their cap.

Objects of sessions with a TTL carry an ``expiry`` tag (days, rounded up to a rule of
the bucket's lifecycle), so they expire with their events; ``delete_session`` removes
a session's objects (``convlog purge``).

Example:
    ```python
    store = PayloadStore(boto3.client("s3"), "convlog-payloads")
    key = await store.put("user-123", body, ttl_seconds=None)
    raw = await store.get(key, body.digest, body.encoding, max_bytes=32 * 1024 * 1024)
    ```
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from .client import translate_error
from .errors import (
    CorruptEventError,
    InvalidClientError,
    InvalidInputError,
    PayloadMissingError,
    StorageError,
)
from .keys import session_pk, whole_number
from .limits import bounded_inflate
from .records import OBJECT_ATTR, Body

if TYPE_CHECKING:
    from .client import DynamoClient

OBJECT_PREFIX = "sessions/"
S3_THRESHOLD_BYTES = 300_000
EXPIRY_TAG = "convlog-expiry-days"
EXPIRY_CLASSES = (1, 7, 30, 90, 365)
SWEEP_MIN_AGE_SECONDS = 24 * 3600
_READ_STEP = 1024 * 1024
_DELETE_BATCH = 1000


class ObjectClient:
    """Adapter that gives boto3 and aiobotocore S3 clients one awaitable interface.

    Example:
        ```python
        s3 = ObjectClient(boto3.client("s3"))
        await s3.call("head_bucket", Bucket="convlog-payloads")
        ```
    """

    def __init__(self, raw: Any) -> None:
        if not hasattr(raw, "_make_api_call") or not hasattr(raw, "meta"):
            raise InvalidClientError(
                f"s3_client must be a boto3 or aiobotocore S3 client, got {type(raw).__name__}"
            )
        self.raw = raw
        self.is_async = asyncio.iscoroutinefunction(raw._make_api_call)

    async def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """Call one S3 operation, translating every botocore error."""
        method = getattr(self.raw, operation)
        try:
            if self.is_async:
                result: dict[str, Any] = await method(**kwargs)
            else:
                result = await asyncio.to_thread(method, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, operation, str(self.raw.meta.endpoint_url), kwargs) from exc
        return result

    async def read(self, operation: str, limit: int, **kwargs: Any) -> bytes:
        """Call ``get_object`` and read its body, refusing more than ``limit`` bytes.

        Raises:
            CorruptEventError: The object is larger than ``limit``.
        """
        response = await self.call(operation, **kwargs)
        stream = response["Body"]
        out = bytearray()
        try:
            while True:
                chunk = await self._read_chunk(stream)
                if not chunk:
                    return bytes(out)
                out += chunk
                if len(out) > limit:
                    raise CorruptEventError(
                        f"object {kwargs.get('Key')!r} is larger than {limit:,} bytes"
                    )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, operation, str(self.raw.meta.endpoint_url), kwargs) from exc
        finally:
            stream.close()

    async def _read_chunk(self, stream: Any) -> bytes:
        if self.is_async:
            chunk: bytes = await stream.read(_READ_STEP)
        else:
            chunk = await asyncio.to_thread(stream.read, _READ_STEP)
        return chunk


def _translate(
    exc: Exception, operation: str, endpoint: str, params: dict[str, Any]
) -> Exception:
    bucket, key = params.get("Bucket"), params.get("Key")
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("NoSuchKey", "404") and key is not None:
            return PayloadMissingError(f"payload object {key!r} is missing from bucket {bucket!r}")
        if code in ("NoSuchBucket", "404"):
            return StorageError(
                f"bucket {bucket!r} does not exist at {endpoint} (create it with "
                "create_bucket_if_not_exists or deploy template.yaml)", code=code,
            )
    return translate_error(exc, operation, endpoint, {})


def wrap_s3_client(client: Any) -> ObjectClient:
    """Return ``client`` as an ``ObjectClient`` (wrapping it unless it already is one)."""
    return client if isinstance(client, ObjectClient) else ObjectClient(client)


def session_prefix(session_id: str) -> str:
    """The key prefix of a session's objects (session ids may be 1 KB of any text)."""
    return OBJECT_PREFIX + hashlib.sha256(session_id.encode("utf-8")).hexdigest() + "/"


def object_key(session_id: str, digest: str) -> str:
    """The key of a session's payload with this digest."""
    return session_prefix(session_id) + digest


def expiry_days(ttl_seconds: int | None) -> int | None:
    """The lifecycle class an object of this lifetime is tagged with (``None``: keep)."""
    if ttl_seconds is None:
        return None
    days = -(-ttl_seconds // 86400)
    return next((c for c in EXPIRY_CLASSES if c >= days), None)


class PayloadStore:
    """Large payloads of one bucket, addressed by session and digest.

    Args:
        s3_client: A boto3 or aiobotocore S3 client.
        bucket_name: A bucket made by ``create_bucket_if_not_exists`` or
            ``template.yaml``.
        threshold: Payloads whose stored form is larger than this go to S3.

    Example:
        ```python
        store = PayloadStore(boto3.client("s3"), "convlog-payloads")
        removed = await store.sweep(EventLog(client, "agent_sessions").db, "agent_sessions")
        ```
    """

    def __init__(
        self, s3_client: Any, bucket_name: str, *, threshold: int = S3_THRESHOLD_BYTES
    ) -> None:
        if not isinstance(bucket_name, str) or not bucket_name:
            raise InvalidInputError("bucket_name must be a non-empty string")
        self.s3 = wrap_s3_client(s3_client)
        self.bucket = bucket_name
        self.threshold = threshold

    def wants(self, body: Body) -> bool:
        """Whether ``body`` is too large to live in the table."""
        return len(body.data) > self.threshold

    async def put(self, session_id: str, body: Body, *, ttl_seconds: int | None) -> str:
        """Store ``body`` (idempotent: same content, same key) and return its key."""
        key = object_key(session_id, body.digest)
        params: dict[str, Any] = {
            "Bucket": self.bucket, "Key": key, "Body": body.data,
            "ContentType": "application/zlib" if body.encoding == "zlib" else "application/json",
            "ChecksumAlgorithm": "SHA256",
        }
        days = expiry_days(ttl_seconds)
        if days is not None:
            params["Tagging"] = f"{EXPIRY_TAG}={days}"
        await self.s3.call("put_object", **params)
        return key

    async def get(self, key: str, digest: str, encoding: str, *, max_bytes: int) -> bytes:
        """Fetch a payload's canonical JSON, inflated within ``max_bytes`` and verified.

        Raises:
            PayloadMissingError: No object under ``key``.
            CorruptEventError: The object is too large, or does not match ``digest``.
        """
        stored = await self.s3.read("get_object", max_bytes + 1024, Bucket=self.bucket, Key=key)
        raw = bounded_inflate(stored, max_bytes, key) if encoding == "zlib" else stored
        if len(raw) > max_bytes:
            raise CorruptEventError(f"payload {key!r} is larger than {max_bytes:,} bytes")
        if hashlib.sha256(raw).hexdigest() != digest:
            raise CorruptEventError(f"payload object {key!r} does not match its digest")
        return raw

    async def keys(self, prefix: str = OBJECT_PREFIX) -> AsyncIterator[tuple[str, float]]:
        """Yield ``(key, last modified epoch)`` of every object under ``prefix``."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        while True:
            page = await self.s3.call("list_objects_v2", **params)
            for obj in page.get("Contents", []):
                yield str(obj["Key"]), obj["LastModified"].timestamp()
            if not page.get("IsTruncated"):
                return
            params["ContinuationToken"] = page["NextContinuationToken"]

    async def delete(self, keys: Iterable[str]) -> int:
        """Delete objects by key, a thousand a request; return how many."""
        batch: list[str] = []
        total = 0
        for key in [*keys, None]:
            if key is not None:
                batch.append(key)
            if batch and (key is None or len(batch) == _DELETE_BATCH):
                await self.s3.call("delete_objects", Bucket=self.bucket, Delete={
                    "Objects": [{"Key": k} for k in batch], "Quiet": True,
                })
                total, batch = total + len(batch), []
        return total

    async def delete_session(self, session_id: str) -> int:
        """Delete every object of a session (erasure); return how many."""
        return await self.delete([k async for k, _ in self.keys(session_prefix(session_id))])

    async def sweep(
        self, referenced: set[str], *, prefix: str = OBJECT_PREFIX,
        min_age_seconds: float = SWEEP_MIN_AGE_SECONDS, now: float | None = None,
    ) -> list[str]:
        """Delete objects under ``prefix`` that no live item references.

        Only objects older than ``min_age_seconds`` go: a younger one may belong to a
        commit still in flight (its object is written before its event).

        Args:
            referenced: Keys that live items point to (``referenced_keys``).
            prefix: Sweep only under this prefix (``session_prefix(id)``: one session).
            min_age_seconds: Keep younger objects.
            now: Clock (epoch seconds).

        Returns:
            The deleted keys.
        """
        at = time.time() if now is None else now
        orphans = [k async for k, modified in self.keys(prefix)
                   if k not in referenced and at - modified >= min_age_seconds]
        await self.delete(orphans)
        return orphans


def lifecycle_rules() -> list[dict[str, Any]]:
    """The bucket's lifecycle: tagged objects expire with their sessions' TTL class.

    ``template.yaml`` declares the same rules (a test compares them).
    """
    rules: list[dict[str, Any]] = [
        {
            "ID": f"convlog-expiry-{days}d",
            "Filter": {"Tag": {"Key": EXPIRY_TAG, "Value": str(days)}},
            "Status": "Enabled",
            "Expiration": {"Days": days + 1},
        }
        for days in EXPIRY_CLASSES
    ]
    rules.append({
        "ID": "convlog-abort-incomplete-uploads",
        "Filter": {"Prefix": OBJECT_PREFIX},
        "Status": "Enabled",
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
    })
    return rules


async def create_bucket_if_not_exists(
    s3_client: Any, bucket_name: str, *, kms_key_id: str | None = None
) -> bool:
    """Create the payload bucket: private, encrypted, with the TTL lifecycle rules.

    Args:
        s3_client: A boto3 or aiobotocore S3 client.
        bucket_name: The bucket.
        kms_key_id: Encrypt with this KMS key (SSE-KMS); ``None``: S3-managed keys.

    Returns:
        ``True`` when the bucket was created, ``False`` when it existed (its settings
        are applied again either way).

    Example:
        ```python
        await create_bucket_if_not_exists(boto3.client("s3"), "convlog-payloads")
        ```
    """
    s3 = wrap_s3_client(s3_client)
    params: dict[str, Any] = {"Bucket": bucket_name}
    region = getattr(s3.raw.meta, "region_name", None)
    if region and region != "us-east-1":
        params["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        await s3.call("head_bucket", Bucket=bucket_name)
        created = False
    except StorageError as exc:
        if exc.code not in ("404", "NoSuchBucket", "NotFound"):
            raise
        await s3.call("create_bucket", **params)
        created = True
    await s3.call("put_public_access_block", Bucket=bucket_name,
                  PublicAccessBlockConfiguration={
                      "BlockPublicAcls": True, "IgnorePublicAcls": True,
                      "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    rule: dict[str, Any] = {"SSEAlgorithm": "aws:kms" if kms_key_id else "AES256"}
    if kms_key_id:
        rule["KMSMasterKeyID"] = kms_key_id
    await s3.call("put_bucket_encryption", Bucket=bucket_name,
                  ServerSideEncryptionConfiguration={"Rules": [
                      {"ApplyServerSideEncryptionByDefault": rule,
                       "BucketKeyEnabled": bool(kms_key_id)}]})
    await s3.call("put_bucket_lifecycle_configuration", Bucket=bucket_name,
                  LifecycleConfiguration={"Rules": lifecycle_rules()})
    return created


async def referenced_keys(
    db: DynamoClient, table_name: str, *, session_id: str | None = None,
    now: float | None = None, on_scanned: Callable[[int], None] | None = None,
) -> set[str]:
    """Keys of the S3 objects that live (unexpired) items point to.

    One paged consistent ``Query`` of the session's partition, or a paged consistent
    ``Scan`` of the table when ``session_id`` is ``None``; only the ``obj`` and ``ttl``
    attributes are read. ``on_scanned`` is called with the items each page read.
    """
    at = time.time() if now is None else now
    params: dict[str, Any] = {
        "TableName": table_name, "ConsistentRead": True,
        "ProjectionExpression": "#o, #t", "FilterExpression": "attribute_exists(#o)",
        "ExpressionAttributeNames": {"#o": OBJECT_ATTR, "#t": "ttl"},
    }
    operation = "scan"
    if session_id is not None:
        operation = "query"
        params.update(KeyConditionExpression="pk = :pk",
                      ExpressionAttributeValues={":pk": {"S": session_pk(session_id)}})
    keys: set[str] = set()
    while True:
        page = await db.call(operation, **params)
        if on_scanned is not None:
            on_scanned(int(page.get("ScannedCount", 0)))
        for item in page.get("Items", []):
            ttl = whole_number(item["ttl"]) if "ttl" in item else None
            if ttl is not None and ttl <= at:
                continue  # a ttl no writer makes (a table writer's) keeps the object
            key = item[OBJECT_ATTR].get("S")
            if isinstance(key, str):  # another type names no object
                keys.add(key)
        if "LastEvaluatedKey" not in page:
            return keys
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
