"""Tests of the votes service against real Postgres and NATS."""
