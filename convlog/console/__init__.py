"""The audit console: an HTTP API and a web page over a convlog table.

``create_app`` (``convlog.console.app``) builds the FastAPI app; ``ConsoleServer``
(``convlog.console.server``) runs it locally, ``stream_handlers.console`` in Lambda.
Needs the ``console`` extra (FastAPI, uvicorn, Mangum); ``eventstore`` never imports it.

Example:
    ```python
    from convlog.console.app import create_app
    from convlog.console.server import ConsoleServer

    with ConsoleServer(create_app(client, "agent_sessions"), port=8686) as server:
        print("console:", server.url)
    ```
"""
