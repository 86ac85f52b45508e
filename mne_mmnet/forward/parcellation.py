"""Deterministic, contiguous, near-equal-size parcellation of a spherical mesh."""

import numpy as np
from mne.utils import logger
from scipy import sparse
from scipy.sparse.csgraph import connected_components, dijkstra


def _mesh_edge_graph(rr, tris):
    """Sparse symmetric graph of mesh edges weighted by Euclidean edge length."""
    n_vertices = len(rr)
    edges = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    edges = np.sort(edges, axis=1)
    edges = np.unique(edges, axis=0)
    lengths = np.linalg.norm(rr[edges[:, 0]] - rr[edges[:, 1]], axis=1)
    graph = sparse.coo_array(
        (lengths, (edges[:, 0], edges[:, 1])), shape=(n_vertices, n_vertices)
    )
    graph = (graph + graph.T).tocsr()
    return graph


def _farthest_point_seeds(points, n_regions, rng):
    """Pick ``n_regions`` well-spread vertices by farthest-point sampling."""
    seeds = np.empty(n_regions, np.int64)
    seeds[0] = rng.integers(len(points))
    min_dist = np.linalg.norm(points - points[seeds[0]], axis=1)
    for ii in range(1, n_regions):
        seeds[ii] = np.argmax(min_dist)
        np.minimum(
            min_dist, np.linalg.norm(points - points[seeds[ii]], axis=1), out=min_dist
        )
    return seeds


def _graph_voronoi(graph, seeds):
    """Assign every vertex to its nearest seed along mesh edges."""
    _, _, nearest = dijkstra(
        graph, directed=False, indices=seeds, min_only=True, return_predecessors=True
    )
    lookup = np.full(graph.shape[0], -1, np.int64)
    lookup[seeds] = np.arange(len(seeds))
    return lookup[nearest]


def _parcellate_sphere(sphere_rr, tris, n_regions, *, seed, n_refine=10):
    """Split one hemisphere's spherical mesh into contiguous regions.

    Farthest-point sampling on the sphere gives the initial seeds; a
    graph Voronoi partition (Dijkstra along mesh edges, edge length on the
    sphere) assigns vertices; Lloyd-style refinements move each seed to the
    region vertex nearest the region's spherical centroid and re-partition.

    Returns
    -------
    region : ndarray of int, shape (n_vertices,)
        Region index (0 .. n_regions - 1) of every vertex.
    """
    rng = np.random.default_rng(seed)  # int, SeedSequence or Generator
    unit = sphere_rr / np.linalg.norm(sphere_rr, axis=1, keepdims=True)
    graph = _mesh_edge_graph(unit, tris)
    seeds = _farthest_point_seeds(unit, n_regions, rng)
    region = _graph_voronoi(graph, seeds)
    for it in range(n_refine):
        centroids = np.zeros((n_regions, 3))
        np.add.at(centroids, region, unit)
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        new_seeds = seeds.copy()
        for ri in range(n_regions):
            members = np.flatnonzero(region == ri)
            new_seeds[ri] = members[np.argmax(unit[members] @ centroids[ri])]
        if np.array_equal(new_seeds, seeds):
            logger.debug(f"Parcellation converged after {it} refinements")
            break
        seeds = new_seeds
        region = _graph_voronoi(graph, seeds)
    return region


def _region_is_connected(graph, members):
    sub = graph[members][:, members]
    n_comp, _ = connected_components(sub, directed=False)
    return n_comp == 1


def _representative_vertices(rr, region, n_regions):
    """Vertex of each region nearest the region centroid (in ``rr``'s space)."""
    rep = np.empty(n_regions, np.int64)
    for ri in range(n_regions):
        members = np.flatnonzero(region == ri)
        centroid = rr[members].mean(axis=0)
        rep[ri] = members[np.argmin(np.linalg.norm(rr[members] - centroid, axis=1))]
    return rep


def _region_adjacency(region_lh, tris_lh, region_rh, tris_rh, n_lh, n_rh):
    """Boolean region adjacency: regions sharing a mesh edge are neighbours."""
    rows, cols = [], []
    for region, tris, offset in ((region_lh, tris_lh, 0), (region_rh, tris_rh, n_lh)):
        edges = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
        a = region[edges[:, 0]] + offset
        b = region[edges[:, 1]] + offset
        keep = a != b
        rows.append(a[keep])
        cols.append(b[keep])
    rows = np.concatenate(rows)
    cols = np.concatenate(cols)
    n = n_lh + n_rh
    adj = sparse.coo_array(
        (np.ones(2 * len(rows), bool), (np.r_[rows, cols], np.r_[cols, rows])),
        shape=(n, n),
    ).tocsr()
    adj.sum_duplicates()
    adj.data[:] = True
    return sparse.csr_array(adj, dtype=bool)
