"""Pure projections of the event log: stream records to events, events to views.

No boto3, botocore or network code is imported here (``tests/unit/test_layers.py``
checks it), so every function can be unit-tested with plain values. The Lambda handler
in ``stream_handlers`` does the I/O around them.

Example:
    ```python
    from projections import classify, project_session

    rec = classify(stream_record)
    result = project_session(rec.session_id, None, None, [rec.stored])
    ```
"""

from __future__ import annotations

from .records import EventRecord, classify, image_to_attrs, record_location
from .session import (
    SessionProjection,
    first_user_text,
    fold_meta,
    project_session,
    tool_entries,
    view_ttl,
)

__all__ = [
    "EventRecord",
    "SessionProjection",
    "classify",
    "first_user_text",
    "fold_meta",
    "image_to_attrs",
    "project_session",
    "record_location",
    "tool_entries",
    "view_ttl",
]
