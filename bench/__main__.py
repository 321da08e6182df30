"""`make bench`: run every bench/bench_*.py module's main() in turn."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
from pathlib import Path


def main() -> None:
    folder = Path(__file__).parent
    for module in sorted(m.name for m in pkgutil.iter_modules([str(folder)])):
        if module.startswith("bench_"):
            print(f"== {module}", flush=True)
            asyncio.run(importlib.import_module(f"bench.{module}").main())


if __name__ == "__main__":
    main()
