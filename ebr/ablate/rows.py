"""The ablation rows: one technique changed at a time against the default daily config, each with the claim of
the seed article it checks (shared/seeds/: 000 search EBR overview, 001 Taobao MGDSPR, 003 two-tower recall,
004 Facebook EBR).

A row's `overrides` are `section.field=value` strings, exactly what `ebr config --set` takes; a claim names the
metric and the direction that decide "reproduced". Directions: `up` / `down` (the row's metric moves that way
against the baseline), `not_up` (no gain: the seed reports that the technique does not help).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["up", "down", "not_up"]
DIRECTIONS: tuple[str, ...] = ("up", "down", "not_up")
METRICS: tuple[str, ...] = ("click_recall@100", "true_recall@100", "ndcg@10", "p_good@100", "filtered_share@100")
BASELINE = "baseline"
NEEDS_HARD_NEGATIVES = "hard_negatives"

SEEDS = {
    "000": "seed 000 (search EBR overview)",
    "001": "seed 001 (Taobao MGDSPR)",
    "003": "seed 003 (two-tower recall)",
    "004": "seed 004 (Facebook EBR)",
}

_QT = "two_tower.model.query_tower"
_NEG = "two_tower.negatives"
_LOSS = "two_tower.loss"


@dataclass(frozen=True)
class Claim:
    """What a seed article says the technique does, and the metric and direction that check it here."""

    seed: str
    text: str
    metric: str
    direction: Direction

    def __post_init__(self) -> None:
        if self.seed not in SEEDS:
            raise ValueError(f"claim seed {self.seed!r} is not one of {sorted(SEEDS)}")
        if self.metric not in METRICS:
            raise ValueError(f"claim metric {self.metric!r} is not one of {list(METRICS)}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"claim direction {self.direction!r} is not one of {list(DIRECTIONS)}")

    @property
    def article(self) -> str:
        return SEEDS[self.seed]

    @property
    def expectation(self) -> str:
        """`click_recall@100 down` etc.: the metric and the direction the claim predicts for the row."""
        return f"{self.metric} {self.direction.replace('_', ' ')}"


@dataclass(frozen=True)
class AblationRow:
    """One variant: its config overrides (`section.field=value`), what it changes, the claim it checks, what it
    needs from the prepared samples, and a note where the code expresses the technique only approximately."""

    name: str
    overrides: tuple[str, ...]
    changes: str
    claim: Claim | None = None
    needs: tuple[str, ...] = ()
    note: str = ""
    reference: str = BASELINE  # the row its deltas and verdict compare against (a block of an optional tower)


# the hard-negative relevance filter's rows: a looser filter lets false negatives (relevant, unclicked) in
_FALSE_NEGATIVES = Claim("001", "relevance is what the structured-field control guarantees; negatives drawn among "
                         "unclicked docs that pass it push relevant docs down (false negatives)", "true_recall@100",
                         "down")
_FILTER_NOTE = ("skipping false-negative candidates by the query's understanding is this project's remedy, not the "
                "seed's (seed 004 mines ranks 101-500 with no filter)")

# MGDSPR's personalized tower as it was the default: personalization fused by the [CLS] self-attention
_PERSONALIZED = (f"{_QT}.personalization=true", f"{_QT}.cls_fusion=true")

ROWS: tuple[AblationRow, ...] = (
    AblationRow(BASELINE, (), "the default daily config: random + in-batch negatives, offline hard negatives (off the "
                "query's understood leaf category) when the samples have them, I_mix, MGDSPR query tower without "
                "personalization or [CLS] fusion, tau 0.07"),
    # ---- negatives (seeds 003, 004)
    AblationRow(
        "exposed_unclicked",
        ("samples.use_exposed_unclicked_negatives=true", f"{_NEG}.use_exposed_unclicked=true"),
        "each row's negatives are its request's exposed-but-unclicked docs instead of random docs of the corpus",
        Claim("004", "exposed-unclicked negatives give clearly worse recall than random negatives (biased candidate "
              "set; seed 003 agrees)", "click_recall@100", "down"),
    ),
    AblationRow(
        "hard_negatives_none", (f"{_NEG}.hard_negatives=false",),
        "no offline hard negatives: random + in-batch only (baseline mixes them easy:hard 100:1)",
        Claim("004", "offline hard negatives (ANN ranks 101-500) mixed with random ones at 100:1 improve recall",
              "click_recall@100", "down"),
        needs=(NEEDS_HARD_NEGATIVES,),
    ),
    AblationRow(
        "hard_negatives_only", (f"{_NEG}.random_negatives=0", f"{_NEG}.easy_hard_ratio=50"),
        "no random negatives; hard slots per row 511 / 50 = 10.2 at batch 512, at most 11 (the in-batch negatives "
        "stay)",
        Claim("004", "a model trained on hard negatives alone is worse than one trained on random negatives",
              "click_recall@100", "down"),
        needs=(NEEDS_HARD_NEGATIVES,),
        note="approximate: the loss always keeps the in-batch negatives (each row's hard slots hold only its own "
        "request's mined negatives), so 'hard only' is 'no random negatives, a hard-heavy ratio'",
    ),
    AblationRow(
        "hard_negatives_unfiltered", ("samples.hard_negatives.relevance_filter=none",),
        "mined candidates in the request's understood leaf category are kept too (seed 004's band as is; the "
        "baseline skips them as possibly relevant, only unclicked)",
        _FALSE_NEGATIVES,
        needs=(NEEDS_HARD_NEGATIVES,),
        note=_FILTER_NOTE,
    ),
    AblationRow(
        "hard_negatives_control", ("samples.hard_negatives.relevance_filter=control",),
        "mined candidates are skipped only when the relevance control would keep them (understood leaf category and "
        "brand): same-leaf docs of another brand, partial matches, become hard negatives too",
        _FALSE_NEGATIVES,
        needs=(NEEDS_HARD_NEGATIVES,),
        note=_FILTER_NOTE,
    ),
    AblationRow(
        "hard_negatives_no_refill", (f"{_NEG}.refill_hard_slots=false",),
        "a hard slot whose request mined nothing (left) stays empty instead of going to another row of the batch: "
        "easy:hard above the configured 100:1 when the relevance filter leaves requests without mined negatives",
        Claim("004", "hard negatives mixed at easy:hard 100:1 improve recall; fewer of them give back part of the "
              "gain", "click_recall@100", "down"),
        needs=(NEEDS_HARD_NEGATIVES,),
        note="handing empty slots to other rows of the batch is this project's way of holding the ratio, not the "
        "seed's (seed 004 gives every positive its own mined negatives)",
    ),
    # ---- temperature (seeds 000, 001, 003)
    *(
        AblationRow(
            f"tau_{tau}", (f"two_tower.model.temperature={tau}",),
            f"temperature {tau} instead of 0.07 (scores are cosine / tau)",
            Claim("001", "a larger temperature smooths noisy clicks: recall falls, relevance (P_good) rises a lot "
                  "(MGDSPR: tau = 2)", "p_good@100", "up"),
        )
        for tau in ("0.1", "0.2", "1", "2")
    ),
    *(
        AblationRow(
            f"tau_{tau}", (f"two_tower.model.temperature={tau}",),
            f"temperature {tau} instead of 0.07: a sharper softmax, below the default rather than toward MGDSPR's 2"
            + (" (the default until the medium rows)" if tau == "0.05" else ""),
            Claim("001", "the temperature trades relevance for recall: a smaller one fits the clicks harder and "
                  "P_good falls (MGDSPR: tau = 2)", "p_good@100", "down"),
        )
        for tau in ("0.05", "0.03")
    ),
    # ---- loss (seeds 000, 001, 004)
    AblationRow(
        "i_mix_off", (f"{_LOSS}.hard_negative_mixing=false",),
        "no MGDSPR mixed hard negatives I_mix = a i+ + (1 - a) I_hard",
        Claim("001", "I_mix costs a little recall and helps relevance a lot", "p_good@100", "down"),
    ),
    *(
        AblationRow(
            f"triplet_m{m}", (f"{_LOSS}.kind=triplet", f"{_LOSS}.triplet_margin={m}"),
            f"triplet loss on D = 1 - cos with margin {m} instead of the sampled softmax",
            Claim("001", "softmax compares globally like the online search does; a pairwise hinge compares locally "
                  "and hangs on its margin (seed 004: margin choice moves recall 5-10%)", "click_recall@100", "down"),
        )
        for m in ("0.1", "0.2", "0.3")
    ),
    AblationRow(
        "nce", (f"{_LOSS}.kind=nce",), "binary NCE instead of the sampled softmax (InfoNCE)",
        Claim("000", "NCE approximates softmax with a binary task; InfoNCE's multi-class form learns more stably",
              "click_recall@100", "down"),
    ),
    AblationRow(
        "log_q_on", (f"{_LOSS}.log_q_correction=true",),
        "log-Q correction of the sampled candidates' logits (the default until the table below measured it costing "
        "true recall)",
        Claim("003", "in-batch and exposure-weighted negatives oversample popular docs; correcting for the sampling "
              "probability (the Google two-tower paper it cites) lets less-exposed relevant docs surface",
              "true_recall@100", "up"),
        note="seed 003 names the popularity bias of in-batch sampling but states no number for the correction",
    ),
    # ---- query tower (seeds 000, 001, 003)
    AblationRow(
        "multi_granular_off", (f"{_QT}.multi_granular=false",),
        "the semantic unit is the segmented-word mean alone (no unigram/bigram/Transformer/history parts)",
        Claim("001", "the multi-granular semantic unit (mgs) helps both recall and relevance", "click_recall@100",
              "down"),
    ),
    AblationRow(
        "personalization_on", _PERSONALIZED,
        "MGDSPR's personalization on: user profile (SENet, DCN-v2), query history and the real-time, short-term and "
        "long-term behaviour sequences fused with the query semantics by the [CLS] self-attention (the default until "
        "the rows below measured it; "
        "~2.9x the training cost of the default, bench/results/train.md)",
        Claim("001", "search personalized by the user's behaviour sequences separates the interests of different "
              "users under the same query, which a lexical engine cannot", "click_recall@100", "up"),
    ),
    AblationRow(
        "realtime_sequence_off", (*_PERSONALIZED, f"{_QT}.realtime_sequence=false"),
        "the personalized tower without its real-time behaviour sequence (2-layer LSTM and self-attention, the "
        "costliest personalization block)",
        Claim("001", "the real-time sequence (LSTM over the latest clicks, then self-attention) captures how the "
              "user's interest evolves within the session", "click_recall@100", "down"),
        reference="personalization_on",
    ),
    AblationRow(
        "cls_fusion_on", (f"{_QT}.cls_fusion=true",),
        "MGDSPR's [CLS] self-attention fusion of the query tower's tokens instead of flatten + linear (the default "
        "until the rows at medium measured it)",
        Claim("001", "fusing semantics and personalization with [CLS] self-attention (trm) helps recall and "
              "relevance", "click_recall@100", "up"),
        note="the alternative the code offers is flatten + linear, not mean pooling; without personalization the "
        "fusion has only the query's granules and its understanding token to mix",
    ),
    AblationRow(
        "senet_off", (*_PERSONALIZED, f"{_QT}.senet=false"),
        "the personalized tower without SENet field reweighting on the user profile",
        Claim("003", "SENet selects features and suppresses noise, improving the two-tower model", "click_recall@100",
              "down"),
        reference="personalization_on",
    ),
    AblationRow(
        "dcn_off", (*_PERSONALIZED, f"{_QT}.dcn=false"),
        "the personalized tower without DCN-v2 cross layers on the user profile",
        Claim("000", "DCN's explicit crosses capture high-order feature interactions the tower's MLP misses",
              "click_recall@100", "down"),
        reference="personalization_on",
    ),
    AblationRow(
        "fibinet_on", (*_PERSONALIZED, f"{_QT}.bilinear=true"),
        "the personalized tower with FiBiNet bilinear interaction on the user profile (off by default)",
        Claim("000", "FiBiNet's bilinear interaction adds second-order crosses to SENet's field weights",
              "click_recall@100", "up"),
        reference="personalization_on",
    ),
    # ---- doc tower and samples (seeds 000, 001)
    AblationRow(
        "statistics_on", ("two_tower.model.doc_tower.use_statistics=true",),
        "bucketized doc/author click and exposure statistics in the doc tower (off by default)",
        Claim("001", "adding statistics features to MGDSPR did not raise recall", "click_recall@100", "not_up"),
    ),
    AblationRow(
        "doc_id_off", ("two_tower.model.doc_tower.use_id=false",),
        "no doc-id embedding: the doc's item vector is its title alone (H_item = e_id + title by default)",
        Claim("001", "the item representation H_item combines the item ID embedding with the title (the authors' "
              "experience)", "click_recall@100", "down"),
        note="seed 000 warns the other way: a high-dimensional sparse ID embedding can learn noise that does not "
        "generalize; a doc seen in few clicks keeps a near-random id vector",
    ),
    AblationRow(
        "engagement_weights_on", ("two_tower.data.use_weights=true",),
        "positives drawn in proportion to their weight (like / favorite / comment add to it) instead of equally "
        "(the default since the table below measured the weights costing recall)",
        Claim("000", "deeper engagement (likes, favorites, comments) in the retrieval objective brings candidates "
              "that satisfy more", "true_recall@100", "up"),
        note="the seed's claim is about engagement, which the evaluation does not measure; true_recall@100 (graded "
        "relevance) is the nearest proxy",
    ),
    AblationRow(
        "query_understanding_off", (f"{_QT}.query_understanding=false",),
        "no query-understanding token: the query tower does not read the query's understood leaf category and "
        "brand (feature store qu_category_leaf / qu_brand)",
        Claim("000", "query attribute features (category, NER, topic, intent) belong in the query tower beside the "
              "text (seed 002 lists the same)", "true_recall@100", "down"),
    ),
    AblationRow(
        "position_weights_on",
        ("samples.positives.position_weight_power=1", "samples.positives.like_weight=0",
         "samples.positives.favorite_weight=0", "samples.positives.comment_weight=0",
         "two_tower.data.use_weights=true"),
        "positives drawn in proportion to the inverse of their examination propensity (position ** 1, capped at "
        "10), engagement weights zero: clicks the old ranker's top slots made likely count less",
        Claim("000", "clicks are selected by the downstream ranker and by user behaviour, not drawn from the whole "
              "corpus; training only on them overfits that slice (sample selection bias)", "true_recall@100", "up"),
        note="inverse-propensity weighting is this project's remedy, not the seed's; power 1 is the classic "
        "examination ~ 1/position prior",
    ),
    AblationRow(
        "relevance_positives_on", ("samples.positives.relevance_filter=true",),
        "click positives the relevance control would have removed for their request (doc off the query's understood "
        "leaf category, or without its understood brand) are dropped before training",
        Claim("001", "clicks are noisy (the reason for MGDSPR's temperature and I_mix) and relevance is what the "
              "structured-field control guarantees; positives that pass it teach relevance", "ndcg@10", "up"),
        note="using the serving relevance control to clean the training positives is this project's remedy, not "
        "the seed's (MGDSPR applies the control after retrieval)",
    ),
)

ROW_BY_NAME: dict[str, AblationRow] = {r.name: r for r in ROWS}
for _r in ROWS:  # a reference is a row without a reference of its own
    if _r.reference not in ROW_BY_NAME or ROW_BY_NAME[_r.reference].reference != BASELINE:
        raise ValueError(f"ablation row {_r.name!r}: reference {_r.reference!r} must be a row compared to the baseline")
QUICK_ROWS: tuple[str, ...] = (BASELINE, "i_mix_off")


def select_rows(names: list[str] | tuple[str, ...] | None) -> list[AblationRow]:
    """The rows named (every row when None or empty), baseline first, each row's reference before it; an unknown
    name is a ValueError naming it."""
    if not names:
        return list(ROWS)
    unknown = [n for n in names if n not in ROW_BY_NAME]
    if unknown:
        raise ValueError(f"--rows: unknown ablation row {unknown[0]!r} (rows: {', '.join(ROW_BY_NAME)})")
    wanted: list[str] = []
    for n in names:  # a row's reference runs too, before it
        for m in (ROW_BY_NAME[n].reference, n):
            if m not in wanted:
                wanted.append(m)
    if BASELINE not in wanted:
        wanted.insert(0, BASELINE)
    return [ROW_BY_NAME[n] for n in sorted(wanted, key=lambda n: n != BASELINE)]
