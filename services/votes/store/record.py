"""A row as asyncpg returns it, read by column name."""

from typing import Any

Record = Any  # asyncpg.Record, untyped
