"""Evaluation on the holdout day: baselines, the report, the publish gate's rules and the daily run's evaluation
step (`evaluate_day`); the evaluation set, corpus and metrics they use live in `ebr.judgements` and are
re-exported here."""

from ebr.evaluate.baselines import BM25Retriever, PopularityRetriever, Retriever, baseline_systems
from ebr.evaluate.config import EvaluateConfig, GateConfig
from ebr.evaluate.day import evaluate_day, example_queries, ranker_rows
from ebr.evaluate.gate import GateDecision, ann_gate, ann_gate_from_dirs, combine, compare
from ebr.evaluate.report import Report, evaluate_systems, log_report_to_mlflow, retrieval_metrics, write_report
from ebr.judgements.corpus import Corpus, load_corpus
from ebr.judgements.evalset import EvalSet, build_evalset
from ebr.judgements.metrics import (
    Judgements,
    MetricValue,
    TopK,
    ann_recall,
    click_recall,
    filtered_share,
    metric_key,
    ndcg,
    p_good,
    p_good_exact,
    parse_metric_key,
    teacher_agreement,
    teacher_gains,
    true_recall,
)
from ebr.judgements.relevance import relevance_removed
from ebr.lexical import bm25_tokens

__all__ = [
    "BM25Retriever",
    "Corpus",
    "EvalSet",
    "EvaluateConfig",
    "GateConfig",
    "GateDecision",
    "Judgements",
    "MetricValue",
    "PopularityRetriever",
    "Report",
    "Retriever",
    "TopK",
    "ann_gate",
    "ann_gate_from_dirs",
    "ann_recall",
    "baseline_systems",
    "bm25_tokens",
    "build_evalset",
    "click_recall",
    "combine",
    "compare",
    "evaluate_day",
    "evaluate_systems",
    "example_queries",
    "filtered_share",
    "load_corpus",
    "log_report_to_mlflow",
    "metric_key",
    "ndcg",
    "p_good",
    "p_good_exact",
    "parse_metric_key",
    "ranker_rows",
    "relevance_removed",
    "retrieval_metrics",
    "teacher_agreement",
    "teacher_gains",
    "true_recall",
    "write_report",
]
