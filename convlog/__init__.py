"""convlog's operator tools: the ``convlog`` command line and what its verbs run.

This package sits above the library (``eventstore``) and the pure projections
(``projections``): audit (replay, verify, import), erasure (purge), rebuild, the demo,
the embedded DynamoDB endpoint and its local stream pump, and the template check. An
agent app never needs it; it installs with the core package, and the embedded endpoint
needs the ``local`` extra (moto).

Example:
    ```python
    from convlog.audit import verify_session
    from convlog.local import EmbeddedEndpoint

    with EmbeddedEndpoint() as endpoint:
        client = endpoint.client("dynamodb")
    ```
"""
