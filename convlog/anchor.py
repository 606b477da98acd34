"""The anchor: signed digests of session heads, kept where no table writer can reach.

After CloudTrail's log-file integrity validation. A table writer can rewrite a session
and recompute its hash chain, or cut its tail, and the table alone cannot tell. So, on a
schedule, ``write_digest`` records the head of every session that changed since the last
digest -- ``(session, seq, hash, ttl)`` -- in a *digest*: canonical JSON that also names
the sha256 of the previous digest (a chain of digests), signed with an AWS KMS
asymmetric key (``ECC_NIST_P256``, ``ECDSA_SHA_256``) and stored in an S3 bucket with
Object Lock in compliance mode (nobody, not even the account root, deletes or
overwrites it before its retention ends).

Layout: ``convlog-digests/<table>/<999999999999 - number>-<sha256 of body>.json``, so a
one-key ``ListObjectsV2`` returns the newest digest and its body hash (the chain link)
without a ``GetObject``. The signature, the key id and the algorithm are object
metadata. One digest costs one ``ListObjectsV2``, one KMS ``Sign`` and one ``PutObject``
(whatever the number of sessions), plus one ``Scan`` of the table for the heads.

``DigestStore.load`` reads every digest back, checks each signature with KMS ``Verify``
and each chain link, and returns the anchored heads (and signed purges) per session;
``convlog verify`` checks the log against them (``convlog.audit``).

An anchor run (``write_digest``, ``changed_heads``) is in ``convlog.anchor_run``.

Example:
    ```python
    store = DigestStore(s3, kms, "convlog-digests-bucket", "alias/convlog-anchor", "agent_sessions")
    digest = await write_digest(EventLog(dynamodb, "agent_sessions"), store)  # anchor_run
    anchors = store.load()
    ```
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any, TypeVar

from eventstore.errors import ConvlogError
from eventstore.events import canonical_json, now_iso

from .purge_record import PurgeRecord

DIGEST_PREFIX = "convlog-digests"
DIGEST_VERSION = 1
SIGNING_ALGORITHM = "ECDSA_SHA_256"
KEY_SPEC = "ECC_NIST_P256"
MAX_NUMBER = 999_999_999_999
DEFAULT_RETENTION_DAYS = 400
SKEW_SECONDS = 300  # heads written up to this long before the last digest are re-anchored
T = TypeVar("T")


class AnchorError(ConvlogError):
    """The digests cannot be written or read (S3 or KMS refused), or are not valid."""


@dataclass(frozen=True)
class Link:
    """The newest digest as its key and ``LastModified`` tell it (no body read)."""

    number: int
    sha256: str
    modified: str


@dataclass(frozen=True)
class AnchoredHead:
    """The head of one session as a digest recorded it."""

    session_id: str
    seq: int
    hash: str
    ttl: int | None
    digest: int = field(default=0, compare=False)  # the number of the digest that holds it

    def to_json(self) -> dict[str, Any]:
        """The head as it appears in a digest body."""
        return {"session": self.session_id, "seq": self.seq, "hash": self.hash, "ttl": self.ttl}


@dataclass(frozen=True)
class Digest:
    """One signed digest: its number, the previous digest's sha256, the heads, the purges.

    A purge's digest (``convlog.purge_record``) holds purge records and no heads.
    """

    number: int
    table: str
    created: str
    previous: str | None
    heads: tuple[AnchoredHead, ...]
    purges: tuple[PurgeRecord, ...] = ()

    def body(self) -> bytes:
        """The canonical JSON that is hashed, signed and stored."""
        body: dict[str, Any] = {
            "v": DIGEST_VERSION, "number": self.number, "table": self.table,
            "created": self.created, "previous": self.previous,
            "heads": [h.to_json() for h in self.heads],
        }
        if self.purges:  # absent from anchor digests: their bodies are as before
            body["purges"] = [p.to_json() for p in self.purges]
        return canonical_json(body).encode("utf-8")

    @property
    def sha256(self) -> str:
        """The sha256 (hex) of ``body()``: what the next digest names as ``previous``."""
        return hashlib.sha256(self.body()).hexdigest()

    @classmethod
    def parse(cls, body: bytes) -> Digest:
        """Rebuild a digest from its stored body.

        Raises:
            AnchorError: The body is not a digest.
        """
        import json

        try:
            data = json.loads(body)
            number = int(data["number"])
            heads = tuple(
                AnchoredHead(str(h["session"]), int(h["seq"]), str(h["hash"]),
                             None if h["ttl"] is None else int(h["ttl"]), number)
                for h in data["heads"]
            )
            purges = tuple(PurgeRecord.parse(p, number) for p in data.get("purges", []))
            return cls(number, str(data["table"]), str(data["created"]),
                       data["previous"], heads, purges)
        except (ValueError, KeyError, TypeError) as exc:
            raise AnchorError(f"a stored digest is not valid: {exc!r}") from exc


@dataclass
class Anchors:
    """What the digests prove: the anchored heads per session, or why they cannot.

    ``problem`` names a digest that is missing, altered or badly signed (then no
    session can rely on the digests).
    """

    digests: int = 0
    latest: Digest | None = None
    heads: dict[str, list[AnchoredHead]] = field(default_factory=dict)
    purges: dict[str, list[PurgeRecord]] = field(default_factory=dict)
    problem: str | None = None


class DigestStore:
    """The digests of one table in one Object Lock bucket, signed by one KMS key.

    Args:
        s3: A boto3 S3 client.
        kms: A boto3 KMS client.
        bucket: The bucket (created with Object Lock enabled).
        key_id: The KMS key (id, ARN or alias) of spec ``ECC_NIST_P256``.
        table: The convlog table whose heads are anchored.
        retention_days: Compliance-mode retention of each digest.

    Example:
        ```python
        store = DigestStore(boto3.client("s3"), boto3.client("kms"), bucket, key, table)
        anchors = store.load()
        print(anchors.digests, anchors.heads.get("user-123"))
        ```
    """

    def __init__(
        self, s3: Any, kms: Any, bucket: str, key_id: str, table: str,
        *, retention_days: int = DEFAULT_RETENTION_DAYS,
    ) -> None:
        self.s3 = s3
        self.kms = kms
        self.bucket = bucket
        self.key_id = key_id
        self.table = table
        self.retention_days = retention_days
        self.prefix = f"{DIGEST_PREFIX}/{table}/"

    def object_key(self, digest: Digest) -> str:
        """Where a digest is stored (newest first in key order; the body hash in the name)."""
        return f"{self.prefix}{MAX_NUMBER - digest.number:012d}-{digest.sha256}.json"

    def latest_link(self) -> Link | None:
        """The newest digest's number, body sha256 and time, from one one-key listing."""
        listing = self._call("s3:ListObjectsV2", lambda: self.s3.list_objects_v2(
            Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1))
        contents = listing.get("Contents", [])
        if not contents:
            return None
        number, sha = _link_of(contents[0]["Key"])
        modified = contents[0]["LastModified"].astimezone(UTC)
        return Link(number, sha, modified.isoformat(timespec="milliseconds").replace(
            "+00:00", "Z"))

    def write(
        self, heads: list[AnchoredHead], *, link: Link | None, created: str | None = None,
        purges: list[PurgeRecord] | None = None,
    ) -> Digest:
        """Sign and store the digest after ``link`` (the newest one) with ``heads``."""
        digest = Digest(
            number=(link.number + 1) if link else 1, table=self.table,
            created=created or now_iso(), previous=link.sha256 if link else None,
            heads=tuple(sorted(heads, key=lambda h: h.session_id)),
            purges=tuple(purges or ()),
        )
        body = digest.body()
        signed = self._call("kms:Sign", lambda: self.kms.sign(
            KeyId=self.key_id, Message=hashlib.sha256(body).digest(), MessageType="DIGEST",
            SigningAlgorithm=SIGNING_ALGORITHM))
        retain = datetime.now(UTC) + timedelta(days=self.retention_days)
        self._call("s3:PutObject", lambda: self.s3.put_object(
            Bucket=self.bucket, Key=self.object_key(digest), Body=body,
            ContentType="application/json", ChecksumAlgorithm="SHA256",
            Metadata={"signature": base64.b64encode(signed["Signature"]).decode("ascii"),
                      "key-id": str(signed["KeyId"]), "algorithm": SIGNING_ALGORITHM},
            ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=retain))
        return digest

    def read(self, link: Link) -> Digest:
        """The body of the digest ``link`` names (one ``GetObject``; not checked here)."""
        return self.read_dated(link)[0]

    def read_dated(self, link: Link) -> tuple[Digest, str]:
        """The digest ``link`` names and its S3 ``LastModified`` (one ``GetObject``)."""
        key = f"{self.prefix}{MAX_NUMBER - link.number:012d}-{link.sha256}.json"
        obj = self._call("s3:GetObject", lambda: self.s3.get_object(
            Bucket=self.bucket, Key=key))
        modified = obj["LastModified"].astimezone(UTC)
        return Digest.parse(obj["Body"].read()), modified.isoformat(
            timespec="milliseconds").replace("+00:00", "Z")

    def load(self) -> Anchors:
        """Read, check and index every digest (signature, body hash, chain, numbering).

        Two digests may share a number when two writers raced (a purge signing its
        record while ``convlog anchor`` runs): both are kept when both are signed and
        name the same previous digest, and the next digest names one of them.
        """
        anchors = Anchors()
        expected: int | None = None
        previous_link: str | None = None
        for number, group in groupby(self._keys(), key=lambda k: _link_of(k)[0]):
            keys = list(group)
            if previous_link is not None and previous_link not in {_link_of(k)[1] for k in keys}:
                anchors.problem = (f"digest {number} is not the one digest {number + 1} was "
                                   "chained to")
                return anchors
            parents: set[str | None] = set()
            for key in keys:
                obj = self._call("s3:GetObject", lambda k=key: self.s3.get_object(  # type: ignore[misc]
                    Bucket=self.bucket, Key=k))
                body: bytes = obj["Body"].read()
                anchors.problem = self._check(number, _link_of(key)[1], body,
                                              obj.get("Metadata", {}), expected)
                if anchors.problem:
                    return anchors
                digest = Digest.parse(body)
                anchors.latest = anchors.latest or digest
                anchors.digests += 1
                parents.add(digest.previous)
                for head in digest.heads:
                    anchors.heads.setdefault(head.session_id, []).append(head)
                for purge in digest.purges:
                    anchors.purges.setdefault(purge.session_id, []).append(purge)
            if len(parents) > 1:
                anchors.problem = f"the digests numbered {number} name different predecessors"
                return anchors
            expected, previous_link = number - 1, parents.pop()
        if expected not in (None, 0):
            anchors.problem = f"digests 1..{expected} are missing from the bucket"
        return anchors

    def _check(
        self, number: int, sha: str, body: bytes, metadata: dict[str, str],
        expected: int | None,
    ) -> str | None:
        if expected is not None and number != expected:
            return f"digest {expected} is missing from the bucket (found {number} next)"
        if hashlib.sha256(body).hexdigest() != sha:
            return f"digest {number} was altered: its body does not match its name"
        try:
            signature = base64.b64decode(metadata["signature"])
        except (KeyError, ValueError):
            return f"digest {number} carries no signature"
        verdict = self._call("kms:Verify", lambda: _verify(self.kms, self.key_id, body,
                                                           signature))
        if not verdict:
            return f"digest {number} is not signed by {self.key_id}"
        return None

    def _keys(self) -> Iterator[str]:
        token: str | None = None
        while True:
            params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix}
            if token:
                params["ContinuationToken"] = token
            page = self._call("s3:ListObjectsV2", lambda p=params: self.s3.list_objects_v2(**p))  # type: ignore[misc]
            for obj in page.get("Contents", []):
                yield str(obj["Key"])
            token = page.get("NextContinuationToken")
            if not token:
                return

    @staticmethod
    def _call(what: str, call: Callable[[], T]) -> T:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call()
        except (ClientError, BotoCoreError) as exc:
            raise AnchorError(f"{what} failed: {exc}") from exc


def _verify(kms: Any, key_id: str, body: bytes, signature: bytes) -> bool:
    try:
        result = kms.verify(KeyId=key_id, Message=hashlib.sha256(body).digest(),
                            MessageType="DIGEST", Signature=signature,
                            SigningAlgorithm=SIGNING_ALGORITHM)
    except kms.exceptions.KMSInvalidSignatureException:
        return False
    return bool(result.get("SignatureValid"))


def _link_of(key: str) -> tuple[int, str]:
    name = key.rsplit("/", 1)[-1].removesuffix(".json")
    inverted, _, sha = name.partition("-")
    return MAX_NUMBER - int(inverted), sha
