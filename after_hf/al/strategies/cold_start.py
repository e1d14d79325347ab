"""Cold starts: the seed set, chosen before any classifier exists, from pooled embeddings of the TAPT
model (``pool.embeddings``). Random cold start is ``RandomSampling``."""

from __future__ import annotations

import numpy as np

from .base import Strategy

_MINIBATCH_ABOVE = 50  # clusters; like TypiClust's authors, use MiniBatchKMeans for larger budgets


def _kmeans(points: np.ndarray, num_clusters: int, seed: int):
    from sklearn.cluster import KMeans, MiniBatchKMeans  # scikit-learn is imported when a cold start runs

    kind = MiniBatchKMeans if num_clusters > _MINIBATCH_ABOVE else KMeans
    return kind(n_clusters=num_clusters, n_init=3, random_state=seed).fit(points)


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


def distances_to_own_centre(model, points: np.ndarray, rows_per_call: int = 4096) -> np.ndarray:
    """Each point's distance to its cluster's centre, ``model.transform`` a block of rows at a time: the full
    [N, clusters] matrix would take 3.4 GB at N = 85 000 and 5 000 clusters."""
    out = np.empty(len(points))
    for start in range(0, len(points), rows_per_call):
        stop = start + rows_per_call
        out[start:stop] = model.transform(points[start:stop])[np.arange(len(points[start:stop])),
                                                               model.labels_[start:stop]]
    return out


def spread_over_clusters(sizes: np.ndarray, k: int) -> np.ndarray:
    """How many of ``k`` samples each cluster gives: one per cluster (largest first) while they last, the
    rest in proportion to cluster size (D'Hondt divisors), never more than a cluster holds."""
    quota = np.zeros_like(sizes)
    for _ in range(k):
        priority = np.where(quota < sizes, sizes / (quota + 1.0), -np.inf)
        priority[(quota == 0) & (sizes > 0)] += sizes.sum() + 1  # an empty-handed cluster goes first
        quota[np.argmax(priority)] += 1
    return quota


class KMeansColdStart(Strategy):
    """Samples nearest to k-means centroids of the pooled embeddings (AFTER's seed set; Zhu et al. 2008,
    "Active Learning with Sampling by Uncertainty and Density").

    ``num_clusters``: an int, ``None`` (= k: one sample per cluster, AFTER's choice) or ``"silhouette"``
    (the best silhouette score, Rousseeuw 1987, over ``silhouette_range``). The k samples are spread over
    the clusters (at least one per cluster while k allows, the rest by cluster size), each cluster
    giving the items nearest its centroid. The labelled set, if any, is not used.
    """

    name = "kmeans"
    needs = frozenset({"embeddings"})

    def __init__(self, num_clusters: int | str | None = None, silhouette_range: tuple[int, int] = (2, 12),
                 silhouette_sample: int = 2000):
        if not (num_clusters is None or num_clusters == "silhouette" or
                (isinstance(num_clusters, int) and num_clusters >= 1)):
            raise ValueError(f"num_clusters must be a positive int, None (= k) or 'silhouette', got {num_clusters!r}")
        self.num_clusters, self.silhouette_range, self.silhouette_sample = \
            num_clusters, tuple(silhouette_range), silhouette_sample

    def choose_num_clusters(self, points: np.ndarray, seed: int) -> int:
        """The number of clusters in ``silhouette_range`` with the highest silhouette score."""
        from sklearn.metrics import silhouette_score

        low, high = self.silhouette_range
        high = min(high, len(points) - 1)
        if high < max(low, 2):
            return 1
        best, best_score = low, -np.inf
        for num in range(max(low, 2), high + 1):
            labels = _kmeans(points, num, seed).labels_
            if np.unique(labels).size < 2:
                continue
            score = silhouette_score(points, labels, sample_size=min(self.silhouette_sample, len(points)),
                                     random_state=seed)
            if score > best_score:
                best, best_score = num, score
        return best

    def _select(self, pool, labelled, k, rng):
        points, seed = pool.embeddings, _seed(rng)
        if self.num_clusters is None:
            num = k
        elif self.num_clusters == "silhouette":
            num = self.choose_num_clusters(points, seed)
        else:
            num = self.num_clusters
        model = _kmeans(points, min(num, len(points)), seed)
        distances = distances_to_own_centre(model, points)
        sizes = np.bincount(model.labels_, minlength=model.n_clusters)
        quota = spread_over_clusters(sizes, k)
        chosen = []
        for cluster in np.argsort(-sizes, kind="stable"):
            members = np.flatnonzero(model.labels_ == cluster)
            chosen.extend(members[np.argsort(distances[members], kind="stable")[:quota[cluster]]])
        return np.array(chosen)


def typicality(points: np.ndarray, num_neighbours: int) -> np.ndarray:
    """Inverse mean Euclidean distance to the ``num_neighbours`` nearest other points (Hacohen et al. 2022)."""
    if len(points) < 2:
        return np.ones(len(points))
    from sklearn.neighbors import NearestNeighbors

    neighbours = min(num_neighbours, len(points) - 1)
    distances, _ = NearestNeighbors(n_neighbors=neighbours + 1).fit(points).kneighbors(points)
    return 1.0 / (distances[:, 1:].mean(axis=1) + 1e-12)


class TypiClust(Strategy):
    """TypiClust (Hacohen, Dekel & Weinshall 2022, "Active Learning on a Budget: Opposite Strategies Suit
    High and Low Budgets", ICML): cluster labelled ∪ pool into |L| + k clusters (at most
    ``max_clusters``), then repeatedly take the largest cluster with the fewest labelled/chosen items
    and add its most typical pool item (typicality = 1 / mean distance to its ``num_neighbours`` nearest
    neighbours within the cluster). Clusters smaller than ``min_cluster_size`` are used last (the
    authors drop them as outliers). Needs ``labelled.embeddings`` when something is labelled.
    """

    name = "typiclust"
    needs = frozenset({"embeddings"})

    def __init__(self, num_neighbours: int = 20, min_cluster_size: int = 5, max_clusters: int = 500):
        self.num_neighbours, self.min_cluster_size, self.max_clusters = num_neighbours, min_cluster_size, max_clusters

    def _select(self, pool, labelled, k, rng):
        if len(labelled) and labelled.embeddings is None:
            raise ValueError("typiclust needs labelled.embeddings to know which clusters are covered; "
                             "embed the labelled set too (or pass LabelledView.empty() for a cold start)")
        points = pool.embeddings if not len(labelled) else np.concatenate([labelled.embeddings, pool.embeddings])
        num_labelled = len(labelled)
        model = _kmeans(points, min(num_labelled + k, self.max_clusters, len(points)), _seed(rng))
        cluster = model.labels_
        sizes = np.bincount(cluster, minlength=model.n_clusters)
        covered = np.bincount(cluster[:num_labelled], minlength=model.n_clusters)
        left = np.bincount(cluster[num_labelled:], minlength=model.n_clusters)  # unchosen pool items
        ranked: dict[int, list[int]] = {}  # cluster -> its pool positions, most typical first
        chosen = []
        while len(chosen) < k:
            key = np.lexsort((-sizes, covered, sizes < self.min_cluster_size))
            best = next(int(c) for c in key if left[c] > 0)
            if best not in ranked:
                members = np.flatnonzero(cluster == best)
                order = members[np.argsort(-typicality(points[members], self.num_neighbours), kind="stable")]
                ranked[best] = [int(i) - num_labelled for i in order if i >= num_labelled]
            chosen.append(ranked[best].pop(0))
            covered[best] += 1
            left[best] -= 1
        return np.array(chosen)
