"""Evaluation on the holdout day: evaluation set, metrics, baselines, the report and the publish gate's rule."""

from ebr.evaluate.baselines import BM25Retriever, PopularityRetriever, Retriever, baseline_systems
from ebr.evaluate.config import EvaluateConfig, GateConfig
from ebr.evaluate.corpus import Corpus, load_corpus
from ebr.evaluate.evalset import EvalSet, build_evalset
from ebr.evaluate.gate import GateDecision, compare
from ebr.evaluate.metrics import (
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
from ebr.evaluate.relevance import relevance_removed
from ebr.evaluate.report import Report, evaluate_systems, log_report_to_mlflow, retrieval_metrics, write_report
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
    "ann_recall",
    "baseline_systems",
    "bm25_tokens",
    "build_evalset",
    "click_recall",
    "compare",
    "evaluate_systems",
    "filtered_share",
    "load_corpus",
    "log_report_to_mlflow",
    "metric_key",
    "ndcg",
    "p_good",
    "p_good_exact",
    "parse_metric_key",
    "relevance_removed",
    "retrieval_metrics",
    "teacher_agreement",
    "teacher_gains",
    "true_recall",
    "write_report",
]
