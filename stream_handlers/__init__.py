"""Lambda entry points of convlog (``stream_handlers.projector.handler``).

Thin: decode stream records, call ``projections``, write views through ``eventstore``.

Example:
    ```python
    from stream_handlers.projector import build_handler

    handler = build_handler(boto3.client("dynamodb"), "agent_sessions")
    ```
"""
