"""``convlog anchor`` and the digest settings shared with ``convlog verify``.

The digests live in an S3 bucket with Object Lock and are signed by a KMS key; both are
named by ``--digest-bucket``/``CONVLOG_DIGEST_BUCKET`` and
``--signing-key``/``CONVLOG_SIGNING_KEY`` (``convlog serve`` creates a local pair and
prints the exports; ``template.yaml`` creates them on AWS).

Example:
    ```python
    store = digest_store(ctx)  # None when no bucket or key is configured
    signer = purge_signer(ctx)  # signs convlog purge's records into the same digests
    ```
"""

from __future__ import annotations

import os

from eventstore.errors import InvalidInputError
from eventstore.log import EventLog

from .anchor import DigestStore
from .anchor_run import create_anchor_resources, write_digest
from .cli import EXIT_OK, CliContext, make_client, run_async
from .purge_record import PurgeSigner, operator_identity

BUCKET_ENV = "CONVLOG_DIGEST_BUCKET"
KEY_ENV = "CONVLOG_SIGNING_KEY"


def digest_store(ctx: CliContext) -> DigestStore | None:
    """The digest store the flags or environment name, or ``None`` if either is unset."""
    bucket = getattr(ctx.args, "digest_bucket", None) or os.environ.get(BUCKET_ENV)
    key = getattr(ctx.args, "signing_key", None) or os.environ.get(KEY_ENV)
    if not (bucket and key):
        return None
    return DigestStore(ctx.client("s3"), ctx.client("kms"), bucket, key, ctx.table)


def purge_signer(ctx: CliContext) -> PurgeSigner | None:
    """What signs a purge's records into the digests (``None`` without a digest store)."""
    store = digest_store(ctx)
    if store is None:
        return None
    return PurgeSigner(store, by=operator_identity(ctx.client("sts")))


def run_anchor(ctx: CliContext) -> int:
    """``convlog anchor``: sign and store one digest of every head changed since the last.

    Raises:
        InvalidInputError: The digest bucket or the signing key is not configured.
    """
    store = digest_store(ctx)
    if store is None:
        raise InvalidInputError(
            f"convlog anchor needs a digest bucket and a signing key: pass "
            f"--digest-bucket and --signing-key or set {BUCKET_ENV} and {KEY_ENV} "
            "(convlog serve prints local ones)"
        )
    digest = run_async(write_digest(EventLog(ctx.client(), ctx.table), store))
    ctx.print(f"digest {digest.number}: {len(digest.heads)} session head(s) anchored in "
              f"s3://{store.bucket}/{store.object_key(digest)}")
    return EXIT_OK


def local_anchor_resources(url: str, table: str) -> tuple[str, str]:
    """For ``convlog serve``: a local Object Lock bucket and signing key at ``url``."""
    bucket = "".join(c if c.isalnum() else "-" for c in f"convlog-digests-{table}".lower())
    bucket = bucket[:63].strip("-")
    s3, kms = make_client("s3", url, "us-east-1"), make_client("kms", url, "us-east-1")
    return bucket, create_anchor_resources(s3, kms, bucket)
