"""Shared helpers for spindle's integration tests (servers, raw IPROTO, Lua clients)."""
