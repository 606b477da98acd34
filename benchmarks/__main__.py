"""``python -m benchmarks``: run the benchmarks and rewrite BENCHMARKS.md."""

from benchmarks.run import main

raise SystemExit(main())
