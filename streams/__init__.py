"""The faust-streaming app that materializes per-tenant status tables (issue 6; not built yet)."""
