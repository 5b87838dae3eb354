"""The query-tower server: FastAPI on uvicorn answering `query + user -> top-K docs` from a published bundle.

`ebr serve` (registered through the `ebr.commands` entry points by `serving.cli.register`) starts it; see
docs/serving.md for the API, settings, hot swap, degradation and metrics. This package imports `ebr`, never
the reverse.
"""
