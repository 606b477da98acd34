"""Benchmarks: convlog against the single-item DynamoDBSession and the SDK's SQLiteSession.

Run ``python -m benchmarks`` (``--quick`` for a short run). Needs the packages in
``benchmarks/requirements.txt``; CI does not install them.
"""
