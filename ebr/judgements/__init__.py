"""Ground truth of a day and how a ranking scores against it: the evaluation-day table (`evalset`, the one rule
for the clicks and labels of day D), the doc corpus as of a day (`corpus`), the metrics (`metrics`) and the relevance
control's rule that the metrics, the server and the samples share (`relevance`)."""

from ebr.judgements.corpus import Corpus, load_corpus
from ebr.judgements.evalset import EvalSet, build_evalset
from ebr.judgements.metrics import Judgements, MetricValue, metric_key, parse_metric_key

__all__ = [
    "Corpus",
    "EvalSet",
    "Judgements",
    "MetricValue",
    "build_evalset",
    "load_corpus",
    "metric_key",
    "parse_metric_key",
]
