"""Every metric against values computed by hand on tiny arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ebr.evaluate import (
    Corpus,
    Judgements,
    TopK,
    ann_recall,
    click_recall,
    filtered_share,
    metric_key,
    ndcg,
    p_good,
    p_good_exact,
    parse_metric_key,
    relevance_removed,
    teacher_agreement,
    teacher_gains,
    true_recall,
)
from ebr.judgements.relevance import understanding_mismatch
from tests.evaluate.handmade import reference_metrics

# three requests, K_ret = 4, -1 = empty slot
RETRIEVED = np.array(
    [
        [10, 20, 30, -1],
        [40, 10, -1, -1],
        [50, 60, 70, 80],
    ]
)
CLICKS = Judgements.from_clicks([[20, 99], [], [80]])
# request 0: complete labels; request 1: no complete labels; request 2: complete, nothing relevant
LABELS = Judgements.from_labels([{10: 2, 30: 1, 99: 1, 20: 0}, None, {}])


def test_click_recall_skips_requests_without_clicks() -> None:
    got = click_recall(RETRIEVED, CLICKS, [1, 2, 4])
    # request 0: clicked {20, 99}; request 2: clicked {80} at rank 4; request 1 has no click
    assert got[1].value == pytest.approx((0 / 2 + 0) / 2) and got[1].n_requests == 2
    assert got[2].value == pytest.approx((1 / 2 + 0) / 2) and got[2].n_requests == 2
    assert got[4].value == pytest.approx((1 / 2 + 1) / 2) and got[4].n_requests == 2


def test_true_recall_needs_complete_labels_and_a_relevant_doc() -> None:
    got = true_recall(RETRIEVED, LABELS, [2, 4])
    # only request 0 counts: relevant {10, 30, 99}
    assert got[2].value == pytest.approx(1 / 3) and got[2].n_requests == 1
    assert got[4].value == pytest.approx(2 / 3) and got[4].n_requests == 1


def test_p_good_counts_empty_slots_as_not_good() -> None:
    got = p_good(RETRIEVED, LABELS, [2, 4])
    # requests 0 and 2 have complete labels; request 2 has no good doc at all
    assert got[2].value == pytest.approx((1 / 2 + 0) / 2) and got[2].n_requests == 2
    assert got[4].value == pytest.approx((2 / 4 + 0) / 2) and got[4].n_requests == 2
    exact = p_good_exact(RETRIEVED, LABELS, [2, 4])
    assert exact[2].value == pytest.approx((1 / 2 + 0) / 2)
    assert exact[4].value == pytest.approx((1 / 4 + 0) / 2) and exact[4].n_requests == 2


def test_ndcg_gains_are_two_to_the_label_minus_one() -> None:
    got = ndcg(RETRIEVED, LABELS, [2, 4])
    # request 0: doc 10 (label 2, gain 3) at rank 1, doc 30 (gain 1) at rank 3; ideal gains 3, 1, 1
    assert got[2].value == pytest.approx(3 / (3 + 1 / math.log2(3)))
    assert got[4].value == pytest.approx((3 + 1 / math.log2(4)) / (3 + 1 / math.log2(3) + 1 / math.log2(4)))
    assert got[2].n_requests == 1 and got[4].n_requests == 1  # request 2 has IDCG 0


def test_filtered_share_over_filled_slots() -> None:
    retrieved = np.vstack([RETRIEVED, [-1, -1, -1, -1]])
    removed = np.array(
        [
            [False, True, True, False],
            [True, False, False, False],
            [False, False, False, False],
            [True, True, True, True],  # empty row: removal flags on empty slots do not count
        ]
    )
    got = filtered_share(retrieved, removed, [2, 4])
    assert got[2].value == pytest.approx((1 / 2 + 1 / 2 + 0) / 3) and got[2].n_requests == 3
    assert got[4].value == pytest.approx((2 / 3 + 1 / 2 + 0) / 3) and got[4].n_requests == 3


def _shoes_and_bags() -> Corpus:
    """Docs 1 and 2 are shoes (1 of brand acme, 2 without brand), doc 3 an acme bag."""
    return Corpus(
        doc_ids=np.array([1, 2, 3]),
        titles=np.array(["a", "b", "c"], dtype=object),
        category_leaf=np.array(["shoes", "shoes", "bags"], dtype=object),
        brand=np.array(["acme", None, "acme"], dtype=object),
    )


def test_relevance_removed_matches_category_and_brand() -> None:
    corpus = _shoes_and_bags()
    retrieved = np.array([[1, 2, 3], [1, 2, 3], [1, 2, 3], [1, 2, -1]])
    got = relevance_removed(retrieved, ["shoes", "shoes", None, None], ["acme", None, None, "acme"], corpus)
    expected = np.array(
        [
            [False, True, True],  # doc 2 has no brand, doc 3 is another category
            [False, False, True],
            [False, False, False],  # no query-understanding fields: nothing removed
            [False, True, False],  # empty slot is never removed
        ]
    )
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="doc id 7 is not in the corpus"):
        relevance_removed(np.array([[7]]), ["shoes"], [None], corpus)


def test_ann_recall() -> None:
    ann = np.array([[1, 2, 3], [4, 5, 6]])
    exact = np.array([[1, 3, 9], [7, 8, 6]])
    got = ann_recall(ann, exact, [1, 2, 3])
    assert got[1].value == pytest.approx((1 + 0) / 2) and got[1].n_requests == 2
    assert got[2].value == pytest.approx((1 / 2 + 0) / 2)
    assert got[3].value == pytest.approx((2 / 3 + 1 / 3) / 2)


def test_teacher_agreement_uses_shifted_teacher_scores_as_gains() -> None:
    student = np.array([[0.9, 0.1, 0.5], [0.1, 0.9, 0.5], [0.2, np.nan, 0.1]])
    teacher = np.array([[3.0, 1.0, 2.0], [3.0, 1.0, 2.0], [5.0, np.nan, 5.0]])
    np.testing.assert_allclose(teacher_gains(teacher[:2]), [[2.0, 0.0, 1.0], [2.0, 0.0, 1.0]])
    got = teacher_agreement(student, teacher, [2])
    # row 0 orders like the teacher; row 1 gives gains 0, 1 in its top 2; row 2 has equal teacher scores
    row1 = (1 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert got[2].value == pytest.approx((1.0 + row1) / 2) and got[2].n_requests == 2


def test_judgements_deduplicate_and_keep_the_highest_grade() -> None:
    j = Judgements.from_arrays(2, np.array([0, 0, 1]), np.array([5, 5, 6]), np.array([1, 2, 0]), np.array([1, 1], bool))
    assert j.docs.tolist() == [5] and j.grades.tolist() == [2]
    assert j.judged.tolist() == [True, True]


def test_bad_inputs_name_the_problem() -> None:
    with pytest.raises(ValueError, match="row 0 holds doc id 3 more than once"):
        click_recall(np.array([[3, 3]]), Judgements.from_clicks([[3]]), [2])
    with pytest.raises(ValueError, match="K=5 needs at least 5"):
        click_recall(RETRIEVED, CLICKS, [5])
    with pytest.raises(ValueError, match="3 rows but the ground truth has 2"):
        click_recall(RETRIEVED, Judgements.from_clicks([[1], [2]]), [1])
    with pytest.raises(ValueError, match="name@K"):
        parse_metric_key("recall_100")
    assert parse_metric_key(metric_key("true_recall", 100)) == ("true_recall", 100)


def test_vectorized_metrics_agree_with_plain_loops_on_random_data() -> None:
    rng = np.random.default_rng(5)
    n, k_ret, corpus = 60, 12, 40
    retrieved = np.stack([rng.permutation(corpus)[:k_ret] for _ in range(n)])
    retrieved[rng.random((n, k_ret)) < 0.1] = -1
    clicks = [sorted(rng.choice(corpus, rng.integers(0, 4), replace=False).tolist()) for _ in range(n)]
    labels = [
        None if rng.random() < 0.3 else {int(d): int(rng.integers(0, 3)) for d in rng.choice(corpus, 8, replace=False)}
        for _ in range(n)
    ]
    cj, lj = Judgements.from_clicks(clicks), Judgements.from_labels(labels)
    for k in (1, 5, 12):
        ref = reference_metrics(retrieved, clicks, labels, k)
        for name, fn, truth in (
            ("click_recall", click_recall, cj),
            ("true_recall", true_recall, lj),
            ("p_good", p_good, lj),
            ("ndcg", ndcg, lj),
        ):
            got = fn(retrieved, truth, [k])[k]
            assert got.n_requests == len(ref[name]), (name, k)
            assert got.value == pytest.approx(float(np.mean(ref[name]))), (name, k)


def test_no_qualifying_request_gives_nan_and_zero() -> None:
    got = click_recall(RETRIEVED, Judgements.from_clicks([[], [], []]), [2])[2]
    assert math.isnan(got.value) and got.n_requests == 0


def test_topk_lookups_with_huge_and_unknown_ids() -> None:
    big = 2**62 + 5  # forces the id-compression path of the row index
    top = TopK(np.array([[big, 7, -1], [7, big, 3]]))
    rows, docs = np.array([0, 0, 0, 1, 1, 1]), np.array([7, big, 3, big, 3, 99])
    assert top.positions(rows, docs).tolist() == [1, 0, 3, 1, 2, 3]
    small = TopK(np.array([[5, 1]]))
    assert small.positions(np.array([0, 0, 0]), np.array([1, 6, -1])).tolist() == [1, 2, 2]


def test_slot_grades_look_up_each_retrieved_doc_in_the_labels_with_huge_ids_and_any_triple_order() -> None:
    """Metrics look each retrieved slot up in the labels (memory of the top-K, not of ~1,000 labels a request)."""
    big = 2**62 + 5  # forces the id-compression path
    labels = Judgements.from_labels([{7: 2, big: 1, 3: 0}, None, {big: 3, 9: 1}])
    retrieved = np.array([[big, 7, 3, -1], [7, big, 9, -1], [9, 8, big, -1]])
    want = [[1, 2, 0, 0], [0, 0, 0, 0], [1, 0, 3, 0]]
    assert labels.slot_grades(retrieved).tolist() == want
    shuffled = Judgements(3, labels.rows[::-1].copy(), labels.docs[::-1].copy(), labels.grades[::-1].copy(),
                          labels.judged)  # built directly, triples not sorted
    assert shuffled.slot_grades(retrieved).tolist() == want
    assert labels.count_at_least(1).tolist() == [2, 0, 2] and labels.count_at_least(2).tolist() == [1, 0, 1]
    # @2: request 0 has gains 1 + 3/log2(3) of ideal 3 + 1/log2(3); request 2 has 1 (its grade 3 is at slot 3)
    assert ndcg(retrieved, labels, [2])[2].value == pytest.approx(
        np.mean([(1 + 3 / np.log2(3)) / (3 + 1 / np.log2(3)), 1 / (7 + 1 / np.log2(3))]))
    assert ndcg(retrieved, shuffled, [2]) == ndcg(retrieved, labels, [2])


def test_the_days_judgements_and_ideal_dcg_are_built_once_and_shared_read_only():
    """Every system of an evaluation is scored against the same clicks and labels: built once per evaluation set
    (read-only from then on), the ideal DCG once per labels and Ks, and the metrics equal a fresh computation."""
    from ebr.judgements.metrics import Judgements, ndcg
    from tests.evaluate.handmade import make_evalset

    ev = make_evalset(["a", "b", "c"], clicks=[[1], [], [2, 3]], labels=[{1: 2, 4: 1}, None, {3: 1}])
    labels, clicks = ev.labels(), ev.clicks()
    assert ev.labels() is labels and ev.clicks() is clicks
    with pytest.raises(ValueError, match="read-only"):
        labels.grades[0] = 5
    retrieved = np.array([[4, 1, -1], [7, 8, 9], [2, 3, -1]])
    shared = ndcg(retrieved, labels, [1, 2])
    assert ndcg(retrieved, labels, [1, 2]) == shared  # from the remembered ideal DCG
    fresh = Judgements.from_arrays(labels.n_rows, labels.rows.copy(), labels.docs.copy(), labels.grades.copy(),
                                   labels.judged.copy())
    assert ndcg(retrieved, fresh, [1, 2]) == shared
    other = ndcg(retrieved, labels, [3])  # other Ks: their own ideal DCG
    assert set(other) == {3}


def test_per_request_values_average_to_the_metric_of_any_subset_of_requests() -> None:
    from ebr.judgements.metrics import ndcg_rows, true_recall_rows

    rng = np.random.default_rng(11)
    n, k_ret, corpus = 50, 12, 40
    retrieved = np.stack([rng.permutation(corpus)[:k_ret] for _ in range(n)])
    labels = [None if rng.random() < 0.3 else {int(d): int(rng.integers(0, 3))
                                               for d in rng.choice(corpus, 8, replace=False)} for _ in range(n)]
    subset = np.sort(rng.choice(n, 20, replace=False))
    whole, part = Judgements.from_labels(labels), Judgements.from_labels([labels[i] for i in subset])
    for rows_fn, fn in ((true_recall_rows, true_recall), (ndcg_rows, ndcg)):
        per = rows_fn(retrieved, whole, [5, 12])
        for k in (5, 12):
            assert per[k].mean() == fn(retrieved, whole, [k])[k]
            # the subset's mean is the metric computed on the subset alone, to the bit
            assert per[k].mean(subset) == fn(retrieved[subset], part, [k])[k]
            assert per[k].mean(subset) != per[k].mean()


def test_understanding_mismatch_is_the_same_rule_row_by_row() -> None:
    corpus = _shoes_and_bags()
    q_cat = ["shoes", "shoes", None, None, "shoes", "bags"]
    q_brand = ["acme", None, None, "acme", np.nan, "acme"]
    docs = np.array([2, 3, 3, 2, 1, 3])
    pos = corpus.positions(docs[:, None], "docs")[:, 0]
    got = understanding_mismatch(q_cat, q_brand, corpus.category_leaf[pos], corpus.brand[pos])
    np.testing.assert_array_equal(got, [True, True, False, True, False, False])
    np.testing.assert_array_equal(got, relevance_removed(docs[:, None], q_cat, q_brand, corpus)[:, 0])
    with pytest.raises(ValueError, match="need the same length"):
        understanding_mismatch(["shoes"], [None], ["shoes", "bags"], [None, None])
