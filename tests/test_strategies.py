"""Query strategies: the interface contract, properties every strategy keeps, and known answers."""

import dataclasses
import importlib.util
import inspect
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from after_hf.al.strategies import (
    COLD_STARTS, PENDING, STRATEGIES, WRAPPERS, ClassBalanced, KMeansColdStart, LabelledView, PoolView,
    QueryStrategy, ScoreStrategy, SpeakerDiverse, StochasticBatch, Strategy, StrategyError, get_cold_start,
    get_strategy,
)
from after_hf.al.strategies.badge import (
    gradient_factors, gradient_sq_distances, materialise_gradient_embeddings,
)
from after_hf.al.strategies.bayesian import _conditional_entropy, bald_scores
from after_hf.al.strategies.uncertainty import entropy
from after_hf.al.strategies.wrappers import balanced_quota

C, T, D = 4, 6, 5


def make_pool(n=24, seed=0, speakers=4, prefix="p"):
    rng = np.random.default_rng(seed)
    mc = rng.dirichlet(np.full(C, 0.4), size=(T, n))
    return PoolView(ids=[f"{prefix}{i}" for i in range(n)], probs=mc.mean(axis=0), mc_probs=mc,
                    embeddings=rng.normal(size=(n, D)), speakers=rng.integers(0, speakers, n).astype(str))


def make_labelled(n=8, seed=1):
    rng = np.random.default_rng(seed)
    return LabelledView(ids=[f"l{i}" for i in range(n)], labels=rng.integers(0, C, n),
                        embeddings=rng.normal(size=(n, D)), speakers=rng.integers(0, 4, n).astype(str))


ALL_SPELLINGS = list(STRATEGIES) + [
    "class_balanced:entropy", "class_balanced:coreset", "speaker_diverse:badge",
    "speaker_diverse:class_balanced:bald", "softmax:margin", "softrank:least_confidence",
    "power:bald",
]


# ---------------------------------------------------------------- properties of every strategy

@pytest.mark.parametrize("name", ALL_SPELLINGS)
@pytest.mark.parametrize("k", [1, 5, 24])
def test_every_strategy_returns_k_distinct_unlabelled_pool_ids_reproducibly(name, k):
    pool, labelled = make_pool(), make_labelled()
    strategy = get_strategy(name)
    assert isinstance(strategy, QueryStrategy)
    first = strategy.select(pool, labelled, k, np.random.default_rng(7))
    again = strategy.select(pool, labelled, k, np.random.default_rng(7))
    assert len(first) == k and len(set(first)) == k
    assert set(first) <= set(pool.ids)
    assert not set(first) & set(labelled.ids)
    assert list(first) == list(again)


@pytest.mark.parametrize("name", ALL_SPELLINGS)
def test_every_strategy_works_with_nothing_labelled_and_with_k_zero(name):
    pool = make_pool(n=10)
    strategy = get_strategy(name)
    picked = strategy.select(pool, LabelledView.empty(), 4, np.random.default_rng(0))
    assert len(set(picked)) == 4
    assert strategy.select(pool, LabelledView.empty(), 0, np.random.default_rng(0)).size == 0


@pytest.mark.parametrize("name", ["entropy", "margin", "bald", "coreset", "batchbald"])
def test_selection_is_by_id_not_by_position(name):
    """Shuffling the pool's rows must not change which samples are chosen (deterministic strategies)."""
    pool, labelled = make_pool(), make_labelled()
    perm = np.random.default_rng(3).permutation(len(pool))
    shuffled = PoolView(ids=pool.ids[perm], probs=pool.probs[perm], mc_probs=pool.mc_probs[:, perm],
                        embeddings=pool.embeddings[perm], speakers=pool.speakers[perm])
    strategy = get_strategy(name)
    assert set(strategy.select(pool, labelled, 6, np.random.default_rng(0))) == \
        set(strategy.select(shuffled, labelled, 6, np.random.default_rng(0)))


# ---------------------------------------------------------------- the interface refuses bad input

def test_pool_view_cannot_carry_labels():
    with pytest.raises(TypeError, match="never see labels"):
        PoolView(ids=["a", "b"], labels=[0, 1])
    pool = make_pool(n=3)
    assert not hasattr(pool, "labels")
    with pytest.raises((AttributeError, TypeError, dataclasses.FrozenInstanceError)):
        pool.labels = np.array([0, 1, 2])
    with pytest.raises(ValueError):  # arrays are read-only copies
        pool.probs[0, 0] = 1.0


def test_interface_errors_name_the_fix():
    pool, labelled = make_pool(n=6), make_labelled(n=2)
    entropy_strategy = get_strategy("entropy")
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"k must be an integer in \[0, 6\]"):
        entropy_strategy.select(pool, labelled, 7, rng)
    with pytest.raises(ValueError, match="duplicates"):
        PoolView(ids=["a", "a"])
    with pytest.raises(TypeError, match="astype"):
        PoolView(ids=np.arange(3))
    with pytest.raises(ValueError, match="both in the pool and labelled"):
        entropy_strategy.select(pool, LabelledView(ids=[pool.ids[0]], labels=[1]), 1, rng)
    with pytest.raises(ValueError, match="needs pool.probs"):
        entropy_strategy.select(PoolView(ids=pool.ids), labelled, 1, rng)
    with pytest.raises(ValueError, match="not logits"):
        PoolView(ids=["a", "b"], probs=[[2.0, -1.0], [0.3, 0.1]])
    with pytest.raises(ValueError, match=r"shape \[N=2, D\]"):
        PoolView(ids=["a", "b"], embeddings=np.zeros((3, 4)))
    with pytest.raises(TypeError, match="default_rng"):
        entropy_strategy.select(pool, labelled, 1, 0)
    with pytest.raises(ValueError, match="labelled.embeddings"):
        get_strategy("coreset").select(pool, LabelledView(ids=["x"], labels=[0]), 1, rng)


def test_registry_spelling_and_keyword_routing():
    assert {"random", "entropy", "least_confidence", "margin", "bald", "batchbald", "coreset", "badge",
            "power_entropy", "power_bald"} <= set(STRATEGIES)
    assert {"class_balanced", "speaker_diverse"} <= set(WRAPPERS)
    nested = get_strategy("speaker_diverse:class_balanced:power_bald", max_per_speaker=2, beta=3.0)
    assert nested.name == "speaker_diverse:class_balanced:power_bald"
    assert nested.max_per_speaker == 2 and nested.inner.inner.beta == 3.0
    assert nested.needs == {"mc_probs", "probs", "speakers"}
    assert get_strategy("batchbald", num_samples=64).num_samples == 64
    with pytest.raises(ValueError, match="choose one of"):
        get_strategy("bold")
    with pytest.raises(ValueError, match="unknown wrapper"):
        get_strategy("balanced:entropy")
    # a cold-start typo is called a cold start and lists the cold starts (it said "unknown strategy 'kmean' in 'kmean'")
    with pytest.raises(ValueError, match=r"^unknown cold start 'kmean' \(did you mean 'kmeans'\?\); choose one of "
                                         r"\['kmeans', 'random', 'typiclust'\]$"):
        get_cold_start("kmean")
    with pytest.raises(TypeError, match="takes no"):
        get_strategy("entropy", beta=2.0)
    with pytest.raises(TypeError, match="per-item score"):
        get_strategy("power:coreset")


# ---------------------------------------------------------------- known answers

AMBIGUITY_ROWS = np.array([
    [0.90, 0.05, 0.03, 0.02],  # confident
    [0.50, 0.50, 0.00, 0.00],  # margin 0: the margin pick
    [0.40, 0.20, 0.20, 0.20],  # highest entropy
    [0.34, 0.33, 0.33, 0.00],  # lowest top probability: the least-confidence pick
    [0.97, 0.01, 0.01, 0.01],
])


@pytest.mark.parametrize("name, expected_best", [("entropy", 2), ("least_confidence", 3), ("margin", 1)])
def test_uncertainty_strategies_pick_the_most_ambiguous_row(name, expected_best):
    pool = PoolView(ids=[f"r{i}" for i in range(5)], probs=AMBIGUITY_ROWS)
    picked = get_strategy(name).select(pool, LabelledView.empty(), 2, np.random.default_rng(0))
    assert picked[0] == f"r{expected_best}"
    assert "r0" not in picked and "r4" not in picked
    assert np.argmin(get_strategy(name).scores(pool)) == 4  # the most confident row scores lowest


def test_bald_is_zero_when_mc_samples_agree_and_highest_where_they_disagree():
    agree_uncertain = np.tile([0.25, 0.25, 0.25, 0.25], (T, 1))
    agree_confident = np.tile([0.97, 0.01, 0.01, 0.01], (T, 1))
    disagree = np.eye(C)[np.arange(T) % 2] * 0.96 + 0.01  # samples flip between classes 0 and 1
    mc = np.stack([agree_uncertain, agree_confident, disagree], axis=1)  # [T, 3, C]
    scores = bald_scores(mc)
    assert scores[0] == pytest.approx(0, abs=1e-12) and scores[1] == pytest.approx(0, abs=1e-12)
    expected = entropy(mc[:, 2].mean(axis=0)) - entropy(mc[:, 2]).mean()
    assert scores[2] == pytest.approx(expected) and scores[2] > 0.5
    pool = PoolView(ids=["u", "c", "d"], mc_probs=mc)
    assert get_strategy("bald").select(pool, LabelledView.empty(), 1, np.random.default_rng(0))[0] == "d"


def test_disagreement_separates_predicted_rater_splits_from_model_uncertainty():
    """A soft-label model sure the raters split 50/50 vs one whose MC samples flip between two sure answers:
    ``disagreement`` asks for the first, BALD for the second; disagreement + BALD = entropy of the mean."""
    split = np.tile([0.5, 0.5, 0.0, 0.0], (T, 1))
    flip = np.eye(C)[np.arange(T) % 2] * 0.96 + 0.01
    sure = np.tile([0.97, 0.01, 0.01, 0.01], (T, 1))
    pool = PoolView(ids=["split", "flip", "sure"], mc_probs=np.stack([split, flip, sure], axis=1))
    rng = np.random.default_rng(0)
    assert get_strategy("disagreement").select(pool, LabelledView.empty(), 1, rng)[0] == "split"
    assert get_strategy("bald").select(pool, LabelledView.empty(), 1, rng)[0] == "flip"
    scores = get_strategy("disagreement").scores(pool)
    assert scores[0] == pytest.approx(np.log(2)) and scores[1] == pytest.approx(scores[2])
    mixed = make_pool(seed=5)
    np.testing.assert_allclose(get_strategy("disagreement").scores(mixed) + bald_scores(mixed.mc_probs),
                               entropy(mixed.mc_probs.mean(axis=0)), atol=1e-12)
    np.testing.assert_allclose(get_strategy("disagreement", model_weight=1).scores(mixed),
                               entropy(mixed.mc_probs.mean(axis=0)), atol=1e-12)
    with pytest.raises(StrategyError, match="model_weight"):
        get_strategy("disagreement", model_weight=-1)


def _split_by_mc_samples(groups, sharpness=0.95, num_mc=16):
    """An item whose MC samples predict class groups[t]: informative, and correlated with any item
    sharing the same partition of the samples."""
    probs = np.full((num_mc, C), (1 - sharpness) / (C - 1))
    probs[np.arange(num_mc), groups] = sharpness
    return probs


def test_batchbald_avoids_the_duplicate_that_top_k_bald_takes():
    rng = np.random.default_rng(0)
    split_a = (np.arange(16) % 2)  # samples split odd/even
    split_b = 2 + (np.arange(16) >= 8)  # a different split of the samples
    items = [_split_by_mc_samples(split_a, 0.97), _split_by_mc_samples(split_a, 0.97),
             _split_by_mc_samples(split_b, 0.90)]
    items += [_split_by_mc_samples(rng.integers(0, C, 16) * 0, 0.97) for _ in range(5)]  # confident fillers
    pool = PoolView(ids=["a", "a_twin", "b"] + [f"f{i}" for i in range(5)], mc_probs=np.stack(items, axis=1))
    top_k_bald = get_strategy("bald").select(pool, LabelledView.empty(), 2, np.random.default_rng(0))
    assert set(top_k_bald) == {"a", "a_twin"}
    batch = get_strategy("batchbald").select(pool, LabelledView.empty(), 2, np.random.default_rng(0))
    assert batch[0] in {"a", "a_twin"} and batch[1] == "b"


def _joint_mutual_information(mc, positions):
    """Brute force I[y_S; ω] = H[y_S] − Σ_i E_ω H[y_i|ω] by enumerating every label configuration."""
    per_sample_joint = np.ones((mc.shape[0], 1))
    for i in positions:
        per_sample_joint = (per_sample_joint[:, :, None] * mc[:, i][:, None, :]).reshape(mc.shape[0], -1)
    return entropy(per_sample_joint.mean(axis=0)) - sum(entropy(mc[:, i]).mean() for i in positions)


def test_exact_batchbald_equals_brute_force_greedy_joint_mutual_information():
    mc = np.random.default_rng(5).dirichlet(np.full(3, 0.3), size=(5, 9))  # T=5, N=9, C=3
    greedy = []
    for _ in range(3):
        rest = [i for i in range(9) if i not in greedy]
        greedy.append(max(rest, key=lambda i: _joint_mutual_information(mc, greedy + [i])))
    pool = PoolView(ids=[f"s{i}" for i in range(9)], mc_probs=mc)
    batch = get_strategy("batchbald").select(pool, LabelledView.empty(), 3, np.random.default_rng(0))
    assert list(batch) == [f"s{i}" for i in greedy]


def test_sampled_batchbald_spreads_over_informative_types_like_exact():
    rng = np.random.default_rng(1)
    splits = [rng.integers(0, C, 16) for _ in range(5)]
    items = [_split_by_mc_samples(s, 0.9) for s in splits for _ in range(3)]  # 5 types, 3 copies each
    ids = [f"type{t}_{copy}" for t in range(5) for copy in range(3)]
    pool = PoolView(ids=ids, mc_probs=np.stack(items, axis=1))
    for num_samples in (10**6, 40):  # exact throughout / sampled after two picks (4^3 > 40)
        batch = get_strategy("batchbald", num_samples=num_samples).select(
            pool, LabelledView.empty(), 5, np.random.default_rng(0))
        assert sorted(i.split("_")[0] for i in batch) == [f"type{t}" for t in range(5)], num_samples


def test_coreset_picks_the_point_farthest_from_all_centres():
    pool = PoolView(ids=["one", "two", "ten", "nine_half"], embeddings=[[1.0], [2.0], [10.0], [9.5]])
    labelled = LabelledView(ids=["origin"], labels=[0], embeddings=[[0.0]])
    picked = get_strategy("coreset").select(pool, labelled, 2, np.random.default_rng(0))
    assert list(picked) == ["ten", "two"]  # then 2.0 is the farthest from {0, 10}


def test_badge_gradient_embedding_matches_autograd_of_the_cross_entropy():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    weight = torch.tensor(rng.normal(size=(C, D)), requires_grad=True)
    hidden = rng.normal(size=(3, D))
    logits = torch.tensor(hidden) @ weight.T
    probs = torch.softmax(logits, dim=1).detach().numpy()
    embeddings = materialise_gradient_embeddings(probs, hidden)
    for i in range(3):
        weight.grad = None
        loss = torch.nn.functional.cross_entropy(logits[i:i + 1], torch.tensor([int(probs[i].argmax())]))
        loss.backward(retain_graph=True)
        np.testing.assert_allclose(embeddings[i], weight.grad.numpy().ravel(), atol=1e-10)


def test_badge_gradient_norm_shrinks_with_confidence():
    hidden = np.ones((2, D))
    probs = np.array([[0.97, 0.01, 0.01, 0.01], [0.4, 0.3, 0.2, 0.1]])
    norms = np.linalg.norm(materialise_gradient_embeddings(probs, hidden), axis=1)
    assert norms[0] < norms[1]
    residual = probs - np.eye(C)[probs.argmax(axis=1)]
    np.testing.assert_allclose(norms, np.linalg.norm(residual, axis=1) * np.linalg.norm(hidden, axis=1))


def test_badge_fast_distances_equal_the_materialised_ones():
    rng = np.random.default_rng(2)
    probs, hidden = rng.dirichlet(np.ones(C), size=30), rng.normal(size=(30, D))
    residual, h = gradient_factors(probs, hidden)
    sq_norms = (residual ** 2).sum(1) * (h ** 2).sum(1)
    explicit = materialise_gradient_embeddings(probs, hidden)
    for index in (0, 17):
        np.testing.assert_allclose(gradient_sq_distances(residual, h, sq_norms, index),
                                   ((explicit - explicit[index]) ** 2).sum(1), atol=1e-10)


def test_badge_spreads_a_batch_over_gradient_space():
    rng = np.random.default_rng(0)
    centres = np.eye(D)[:4] * 20.0
    hidden = np.concatenate([c + rng.normal(scale=0.1, size=(10, D)) for c in centres])
    # one (uncertain) prediction per blob: the gradient embeddings u ⊗ h then form 4 tight blobs too
    # (per-item predictions would scatter a blob in gradient space, as u differs between its items)
    probs = np.repeat(rng.dirichlet(np.full(C, 5.0), size=4), 10, axis=0)
    pool = PoolView(ids=[f"blob{i // 10}_{i % 10}" for i in range(40)], probs=probs, embeddings=hidden)
    for seed in range(3):
        batch = get_strategy("badge").select(pool, LabelledView.empty(), 4, np.random.default_rng(seed))
        assert sorted(i.split("_")[0] for i in batch) == ["blob0", "blob1", "blob2", "blob3"]


def test_power_sampling_concentrates_on_high_scores_as_beta_grows():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(C, 0.7), size=200)
    pool = PoolView(ids=[f"s{i}" for i in range(200)], probs=probs)
    scores = dict(zip(pool.ids, entropy(probs)))
    mean_picked = []
    for beta in (0.0, 1.0, 4.0, 16.0):
        strategy = get_strategy("power_entropy", beta=beta)
        picked = [scores[i] for seed in range(5)
                  for i in strategy.select(pool, LabelledView.empty(), 20, np.random.default_rng(seed))]
        mean_picked.append(np.mean(picked))
    assert np.all(np.diff(mean_picked) > 0), mean_picked
    top = get_strategy("entropy").select(pool, LabelledView.empty(), 20, np.random.default_rng(0))
    very_sharp = get_strategy("power_entropy", beta=1e4).select(pool, LabelledView.empty(), 20,
                                                                np.random.default_rng(0))
    assert set(very_sharp) == set(top)


def test_class_balanced_wrapper_fills_the_rarest_predicted_class_first():
    # pool: 6 very uncertain items predicted class 0, 3 mildly uncertain predicted class 2
    probs = np.array([[0.4, 0.3, 0.2, 0.1]] * 6 + [[0.1, 0.1, 0.7, 0.1]] * 2 + [[0.05, 0.05, 0.85, 0.05]])
    pool = PoolView(ids=[f"c0_{i}" for i in range(6)] + ["c2_a", "c2_b", "c2_sure"], probs=probs)
    labelled = LabelledView(ids=[f"l{i}" for i in range(8)], labels=[0, 0, 1, 1, 1, 3, 3, 3])
    rng = np.random.default_rng(0)
    assert get_strategy("entropy").select(pool, labelled, 1, rng)[0].startswith("c0")
    one = get_strategy("class_balanced:entropy").select(pool, labelled, 1, rng)
    assert one[0] in {"c2_a", "c2_b"}  # class 2 has no labels yet, and its most uncertain member is taken
    three = get_strategy("class_balanced:entropy").select(pool, labelled, 3, rng)
    assert sorted(i[:2] for i in three) == ["c0", "c2", "c2"]  # counts 2,3,0,3 → +2 class 2, +1 class 0
    np.testing.assert_array_equal(balanced_quota(np.array([2, 3, 0, 3]), np.array([6, 0, 3, 0]), 3), [1, 0, 2, 0])
    np.testing.assert_array_equal(balanced_quota(np.array([0, 0]), np.array([1, 9]), 4), [1, 3])  # availability


def test_speaker_wrapper_spreads_a_batch_over_speakers():
    probs = np.array([[0.25] * 4] * 5 + [[0.7, 0.1, 0.1, 0.1]] * 15)  # speaker A is the most uncertain
    speakers = np.array(["A"] * 5 + ["B"] * 5 + ["C"] * 5 + ["D"] * 5)
    probs[10:15] = [0.6, 0.2, 0.1, 0.1]  # then speaker C
    pool = PoolView(ids=[f"{s}{i}" for i, s in enumerate(speakers)], probs=probs, speakers=speakers)
    rng = np.random.default_rng(0)
    plain = get_strategy("entropy").select(pool, LabelledView.empty(), 4, rng)
    assert {i[0] for i in plain} == {"A"}
    spread = get_strategy("speaker_diverse:entropy").select(pool, LabelledView.empty(), 4, rng)
    assert sorted(i[0] for i in spread) == ["A", "B", "C", "D"]
    capped = get_strategy("speaker_diverse:entropy", max_per_speaker=2).select(pool, LabelledView.empty(), 4, rng)
    assert sorted(i[0] for i in capped) == ["A", "A", "C", "C"]
    with pytest.raises(ValueError, match="raise max_per_speaker"):
        get_strategy("speaker_diverse:entropy", max_per_speaker=1).select(pool, LabelledView.empty(), 5, rng)


def test_speaker_wrapper_cap_grows_when_speakers_are_imbalanced():
    speakers = np.array(["big"] * 10 + ["small"])
    pool = PoolView(ids=[f"s{i}" for i in range(11)], probs=np.full((11, C), 0.25), speakers=speakers)
    picked = get_strategy("speaker_diverse:random").select(pool, LabelledView.empty(), 8, np.random.default_rng(0))
    assert len(set(picked)) == 8 and "s10" in picked  # the small speaker is always represented


# ---------------------------------------------------------------- BatchBALD: float32 steps, lazy greedy

def test_batchbald_float32_conditional_entropy_matches_float64_reference():
    rng = np.random.default_rng(0)
    num_mc, n, num_configs = 20, 300, 400
    mc = rng.dirichlet(np.full(C, 0.3), size=(num_mc, n))
    weights = rng.dirichlet(np.full(num_mc, 0.5), size=num_configs)  # rows: posteriors over MC samples
    config_probs = rng.dirichlet(np.ones(num_configs))
    fast = _conditional_entropy(weights, config_probs, mc.transpose(1, 0, 2).astype(np.float32))
    reference = config_probs @ entropy(np.einsum("mt,tnc->mnc", weights, mc))  # float64, [n]
    np.testing.assert_allclose(fast, reference, rtol=0, atol=1e-5)  # nats; measured max ≈ 5e-7


def test_lazy_greedy_batchbald_equals_full_greedy():
    empty = LabelledView.empty()
    for seed in range(3):  # exact gains (3^5 configurations < num_samples): the very same batch
        mc = np.random.default_rng(seed).dirichlet(np.full(3, 0.3), size=(8, 120))
        pool = PoolView(ids=[f"s{i}" for i in range(120)], mc_probs=mc)
        lazy, full = (get_strategy("batchbald", num_samples=10**4, lazy=lazy).select(
            pool, empty, 5, np.random.default_rng(0)) for lazy in (True, False))
        assert list(lazy) == list(full)
    pool = make_pool(n=400, seed=3)  # sampled configurations: greedy up to sampling noise
    lazy, full = (set(get_strategy("batchbald", num_samples=50, lazy=lazy).select(
        pool, empty, 20, np.random.default_rng(0))) for lazy in (True, False))
    assert len(lazy & full) >= 18


def test_batchbald_max_candidates_restricts_the_batch_to_the_top_bald_items():
    split = np.arange(16) % 2
    items = [_split_by_mc_samples(split, 0.97), _split_by_mc_samples(split, 0.97),  # twins, top BALD
             _split_by_mc_samples(2 + (np.arange(16) >= 8), 0.90)] + [_split_by_mc_samples(split * 0, 0.97)] * 3
    pool = PoolView(ids=["a", "a_twin", "b", "f0", "f1", "f2"], mc_probs=np.stack(items, axis=1))
    rng = np.random.default_rng
    unrestricted = set(get_strategy("batchbald").select(pool, LabelledView.empty(), 2, rng(0)))
    assert "b" in unrestricted and len(unrestricted & {"a", "a_twin"}) == 1
    restricted = get_strategy("batchbald", max_candidates=2).select(pool, LabelledView.empty(), 2, rng(0))
    assert set(restricted) == {"a", "a_twin"}  # only the top-2 BALD items were candidates


# ---------------------------------------------------------------- CoreSet

def _pairwise(points):
    return np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))


def test_coreset_equals_float64_greedy_k_centre_and_is_within_twice_the_optimum():
    rng = np.random.default_rng(4)
    points = rng.normal(size=(14, 3)) * 5.0 + 100.0  # far from the origin: cancellation-prone
    pool = PoolView(ids=[f"p{i}" for i in range(12)], embeddings=points[:12])
    labelled = LabelledView(ids=["l0", "l1"], labels=[0, 1], embeddings=points[12:])
    picked = [int(i[1:]) for i in get_strategy("coreset").select(pool, labelled, 3, np.random.default_rng(0))]
    distances = _pairwise(points)
    centres, reference = [12, 13], []
    for _ in range(3):  # Sener & Savarese Alg. 1 on exact distances
        far = int(np.argmax(np.where(np.isin(np.arange(12), reference), -1, distances[:12, centres].min(1))))
        reference.append(far)
        centres.append(far)
    assert picked == reference

    def radius(chosen):  # covering radius of the pool by labelled + chosen centres
        return distances[:12, [12, 13, *chosen]].min(axis=1).max()
    optimum = min(radius(list(c)) for c in combinations(range(12), 3))
    assert radius(picked) <= 2 * optimum + 1e-9


def test_coreset_batch_is_more_spread_than_random():
    rng = np.random.default_rng(0)
    embeddings = np.concatenate([rng.normal(size=(300, D)), rng.normal(size=(20, D)) + 8.0])  # dense + far
    pool = PoolView(ids=[f"e{i}" for i in range(320)], embeddings=embeddings)
    positions = {i: n for n, i in enumerate(pool.ids)}

    def min_distance(ids):
        chosen = embeddings[[positions[i] for i in ids]]
        return _pairwise(chosen)[np.triu_indices(len(chosen), 1)].min()
    coreset = min_distance(get_strategy("coreset").select(pool, LabelledView.empty(), 10, np.random.default_rng(0)))
    randoms = [min_distance(get_strategy("random").select(pool, LabelledView.empty(), 10, np.random.default_rng(s)))
               for s in range(20)]
    assert coreset > max(randoms)


# ---------------------------------------------------------------- BADGE end to end

def test_badge_selection_equals_k_means_plus_plus_on_the_materialised_embeddings():
    rng = np.random.default_rng(1)
    probs, hidden = rng.dirichlet(np.ones(C), size=60), rng.normal(size=(60, D)) + 3.0
    pool = PoolView(ids=[f"g{i:02d}" for i in range(60)], probs=probs, embeddings=hidden)
    explicit = materialise_gradient_embeddings(probs, hidden)  # [N, C·D]
    for seed in range(3):
        picks_rng, chosen = np.random.default_rng(seed), [int(np.argmax((explicit ** 2).sum(1)))]
        nearest = ((explicit - explicit[chosen[0]]) ** 2).sum(1)
        while len(chosen) < 8:  # D² sampling with the same random stream as the strategy
            cumulative = np.cumsum(nearest)
            chosen.append(int(np.searchsorted(cumulative, picks_rng.random() * cumulative[-1], side="right")))
            nearest = np.minimum(nearest, ((explicit - explicit[chosen[-1]]) ** 2).sum(1))
            nearest[chosen] = 0.0
        picked = get_strategy("badge").select(pool, LabelledView.empty(), 8, np.random.default_rng(seed))
        assert list(picked) == [f"g{i:02d}" for i in chosen]


def test_badge_prefers_uncertain_items_and_the_wrong_scaling_would_not():
    """With equal features, the first centre is the least confident item (largest ||p − e_ŷ||); the
    −p_c-only scaling (one-hot term lost) would rank the most confident item first instead."""
    probs = np.array([[0.97, 0.01, 0.01, 0.01], [0.4, 0.3, 0.2, 0.1], [0.7, 0.1, 0.1, 0.1]])
    pool = PoolView(ids=["sure", "unsure", "mid"], probs=probs, embeddings=np.ones((3, D)))
    assert get_strategy("badge").select(pool, LabelledView.empty(), 1, np.random.default_rng(0))[0] == "unsure"
    wrong_norms = np.linalg.norm(probs, axis=1)  # ||−p ⊗ h|| ∝ ||p||
    assert pool.ids[np.argmax(wrong_norms)] == "sure"


# ---------------------------------------------------------------- stochastic batch acquisition

class _FixedScores(ScoreStrategy):
    name, needs = "fixed", frozenset()

    def __init__(self, values):
        self.values = np.asarray(values, dtype=float)

    def _scores(self, pool):
        return self.values


@pytest.mark.parametrize("mode, beta, expected", [
    ("power", 2.0, np.array([1, 4, 9, 16]) / 30),  # ∝ s^β, s = 1..4
    ("softmax", 1.0, np.exp([1, 2, 3, 4]) / np.exp([1, 2, 3, 4]).sum()),
    ("softrank", 1.0, np.array([1 / 4, 1 / 3, 1 / 2, 1]) / (25 / 12)),  # ∝ rank^−β, rank 1 = score 4
])
def test_stochastic_acquisition_samples_with_the_stated_probabilities(mode, beta, expected):
    strategy = StochasticBatch(_FixedScores([1.0, 2.0, 3.0, 4.0]), mode=mode, beta=beta)
    pool, rng, draws = PoolView(ids=["a", "b", "c", "d"]), np.random.default_rng(0), 4000
    firsts = [strategy.select(pool, LabelledView.empty(), 1, rng)[0] for _ in range(draws)]
    frequencies = np.array([firsts.count(i) for i in "abcd"]) / draws
    assert np.all(np.abs(frequencies - expected) < 5 * np.sqrt(expected * (1 - expected) / draws) + 1e-3)


# ---------------------------------------------------------------- labels never reach a strategy

class _Spy(Strategy):
    """Records what a wrapper hands its inner strategy; picks the first k items."""
    name, needs = "spy", frozenset({"embeddings"})

    def __init__(self):
        self.calls = []

    def _select(self, pool, labelled, k, rng):
        self.calls.append((pool, labelled))
        return np.arange(k)


@pytest.mark.parametrize("wrapper", ["class_balanced", "speaker_diverse"])
def test_wrappers_hand_inner_strategies_no_label_of_any_pool_item(wrapper):
    pool, labelled = make_pool(n=40), make_labelled()
    spy = _Spy()
    outer = ClassBalanced(spy) if wrapper == "class_balanced" else SpeakerDiverse(spy, max_per_speaker=2)
    outer.select(pool, labelled, 8, np.random.default_rng(0))
    assert len(spy.calls) >= 2  # quotas per predicted class / refills after full speakers
    for sub_pool, context in spy.calls:
        assert isinstance(sub_pool, PoolView) and not hasattr(sub_pool, "labels")
        from_pool = np.isin(context.ids, pool.ids)
        assert np.all(context.labels[from_pool] == PENDING)  # chosen earlier in this batch, not annotated
        np.testing.assert_array_equal(context.labels[~from_pool], labelled.labels)  # only real labels: labelled


def test_class_balance_groups_the_pool_by_predicted_class_only():
    """Two pools with the same predictions give the same batch: there is nothing else to group by."""
    pool = make_pool(n=30)
    again = PoolView(ids=pool.ids, probs=pool.probs, mc_probs=pool.mc_probs, embeddings=pool.embeddings,
                     speakers=pool.speakers)
    strategy = get_strategy("class_balanced:entropy")
    assert list(strategy.select(pool, make_labelled(), 6, np.random.default_rng(0))) == \
        list(strategy.select(again, make_labelled(), 6, np.random.default_rng(0)))
    assert "labels" not in inspect.signature(PoolView.__init__).parameters


# ---------------------------------------------------------------- cold starts

def _blobs(sizes, seed=0, spread=0.3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), D)) * 10.0
    points = np.concatenate([c + rng.normal(scale=spread, size=(s, D)) for c, s in zip(centres, sizes)])
    blob = np.repeat(np.arange(len(sizes)), sizes)
    return PoolView(ids=[f"b{b}_{i:03d}" for i, b in enumerate(blob)], embeddings=points), blob, centres


@pytest.mark.parametrize("name", ["random", "kmeans", "typiclust"])
def test_cold_starts_return_k_distinct_ids_reproducibly(name):
    assert name in COLD_STARTS
    pool, _, _ = _blobs([15, 15, 10])
    first, again = (get_cold_start(name).select(pool, LabelledView.empty(), 6, np.random.default_rng(3))
                    for _ in range(2))
    assert len(set(first)) == 6 and set(first) <= set(pool.ids) and list(first) == list(again)


def test_kmeans_cold_start_takes_the_items_nearest_each_centroid_spread_over_clusters():
    pool, blob, _ = _blobs([40, 25, 15])
    picked = get_cold_start("kmeans", num_clusters=3).select(pool, LabelledView.empty(), 5, np.random.default_rng(0))
    groups = [i.split("_")[0] for i in picked]
    # one per cluster first, then by size (D'Hondt): 40/2 = 20 > 25/2, then 40/3 ≈ 13.3 > 12.5
    assert [groups.count(f"b{b}") for b in range(3)] == [3, 1, 1]
    for b in range(3):  # each cluster's pick is the member closest to the cluster mean
        members = np.flatnonzero(blob == b)
        mean = pool.embeddings[members].mean(0)
        nearest = members[np.argmin(((pool.embeddings[members] - mean) ** 2).sum(1))]
        assert pool.ids[nearest] in picked


def test_kmeans_cold_start_chooses_the_number_of_clusters_by_silhouette():
    pool, _, _ = _blobs([30, 30, 30, 30], spread=0.5)
    strategy = KMeansColdStart(num_clusters="silhouette", silhouette_range=(2, 7))
    assert strategy.choose_num_clusters(pool.embeddings, seed=0) == 4
    picked = strategy.select(pool, LabelledView.empty(), 8, np.random.default_rng(0))
    assert sorted(i.split("_")[0] for i in picked) == ["b0", "b0", "b1", "b1", "b2", "b2", "b3", "b3"]


def test_typiclust_picks_typical_items_from_uncovered_clusters():
    pool, blob, centres = _blobs([30, 30, 30], spread=1.0)
    picked = get_cold_start("typiclust", num_neighbours=10).select(pool, LabelledView.empty(), 3,
                                                                   np.random.default_rng(0))
    assert sorted(i.split("_")[0] for i in picked) == ["b0", "b1", "b2"]
    for i in picked:  # typical = in the dense core: closer to its blob centre than most members
        b, pos = int(i[1]), int(np.flatnonzero(pool.ids == i)[0])
        to_centre = np.linalg.norm(pool.embeddings[blob == b] - centres[b], axis=1)
        assert np.linalg.norm(pool.embeddings[pos] - centres[b]) <= np.quantile(to_centre, 0.3)
    covered = LabelledView(ids=["known0", "known1"], labels=[0, 0], embeddings=centres[:2])
    # blobs 0 and 1 already hold a labelled item: the next pick comes from blob 2
    rest = get_cold_start("typiclust").select(pool, covered, 1, np.random.default_rng(0))
    assert rest[0].startswith("b2")


def test_select_time_benchmark_runs_and_reports_every_requested_strategy(capsys):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_strategies.py"
    spec = importlib.util.spec_from_file_location("bench_strategies", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    names = ["batchbald", "batchbald_full_greedy", "class_balanced:badge", "cold:typiclust"]
    results = bench.main(["--n", "150", "--dim", "8", "--mc", "4", "--k", "5", "--labelled", "10", "--only", *names])
    assert list(results) == names
    assert all(r["wall_s"] >= 0 and r["cpu_s"] >= 0 for r in results.values())
    assert len([line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]) == len(names)


def test_kmeans_distances_by_blocks_equal_the_full_transform():
    """The k-means cold start's distances to each point's own centre, computed a block of rows at a time (no
    N x clusters matrix), equal sklearn's full transform."""
    from after_hf.al.strategies.cold_start import _kmeans, distances_to_own_centre

    points = np.random.default_rng(0).normal(size=(300, 8))
    model = _kmeans(points, 7, seed=0)
    full = model.transform(points)[np.arange(len(points)), model.labels_]
    np.testing.assert_allclose(distances_to_own_centre(model, points, rows_per_call=64), full, rtol=1e-12)
