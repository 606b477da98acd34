"""``convlog anchor`` and the digest settings shared with ``convlog verify``.

The digests live in an S3 bucket with Object Lock and are signed by a KMS key; both are
named by ``--digest-bucket``/``CONVLOG_DIGEST_BUCKET`` and
``--signing-key``/``CONVLOG_SIGNING_KEY`` (``convlog serve`` creates a local pair and
prints the exports; ``template.yaml`` creates them on AWS).

Example:
    ```python
    store = digest_store(ctx)  # None when no bucket or key is configured
    ```
"""

from __future__ import annotations

import os

from eventstore.errors import InvalidInputError
from eventstore.log import EventLog

from .anchor import DigestStore, write_digest
from .cli import EXIT_OK, CliContext, run_async

BUCKET_ENV = "CONVLOG_DIGEST_BUCKET"
KEY_ENV = "CONVLOG_SIGNING_KEY"


def digest_store(ctx: CliContext) -> DigestStore | None:
    """The digest store the flags or environment name, or ``None`` if either is unset."""
    bucket = getattr(ctx.args, "digest_bucket", None) or os.environ.get(BUCKET_ENV)
    key = getattr(ctx.args, "signing_key", None) or os.environ.get(KEY_ENV)
    if not (bucket and key):
        return None
    return DigestStore(ctx.client("s3"), ctx.client("kms"), bucket, key, ctx.table)


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
