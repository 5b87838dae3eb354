"""ebr: daily embedding-based retrieval and coarse ranking for search."""
