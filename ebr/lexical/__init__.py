"""The lexical retrieval channel: BM25 over doc titles (bm25s), built offline, saved beside the embedding
index in a bundle, loaded by the server.

    index = LexicalIndex.build(doc_ids, titles)        # k1=1.5, b=0.75, the project's word segmentation
    save_lexical_index(index, dir); index = load_lexical_index(dir)
    ids, scores = index.search("红色 连衣裙", k=10)       # int64 [k] (-1 pads), float32 [k]

Depends only on `ebr.text` and `ebr.artifacts` (no evaluation, training or serving code).
"""

from ebr.lexical.index import DEFAULT_B, DEFAULT_K1, IDF_METHOD, TF_METHOD, LexicalIndex
from ebr.lexical.store import (
    MANIFEST,
    LexicalIndexError,
    lexical_summary,
    load_lexical_index,
    read_lexical_manifest,
    save_lexical_index,
)
from ebr.lexical.tokens import TOKENIZERS, bm25_tokens, tokenizer_by_name, tokenizer_name, whitespace_tokens

__all__ = [
    "DEFAULT_B",
    "DEFAULT_K1",
    "IDF_METHOD",
    "MANIFEST",
    "TF_METHOD",
    "TOKENIZERS",
    "LexicalIndex",
    "LexicalIndexError",
    "bm25_tokens",
    "lexical_summary",
    "load_lexical_index",
    "read_lexical_manifest",
    "save_lexical_index",
    "tokenizer_by_name",
    "tokenizer_name",
    "whitespace_tokens",
]
