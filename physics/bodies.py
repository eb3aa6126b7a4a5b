"""Particles as separate solid-diffusion bodies: a global colouring of the particle contact graph.

Each labelled particle (the mesh's particle tags: the generator's ground truth or the watershed of
`characterise`, carried by `tomocell mesh --particles auto`) is its own Fick diffusion body. Touching
particles share mesh vertices, so one P1 concentration field over all active cells would let lithium
diffuse through every contact and make a cluster of touching particles one body (issue 17 item 1).
The model therefore carries one c_s field per *colour*: the contact graph of the particles is
coloured so that particles sharing a mesh vertex get different colours, and the c_s field of colour
k lives on the active cells of colour k only. Particles of one colour never share a vertex, so they
are disconnected parts of that field's submesh: no lithium crosses a particle-particle contact
(the contact law "none"); electrons do, phi_s stays one field over all solid cells.

The colouring depends only on the labels and on which labels meet at a vertex, never on the
partition: every rank sends (global vertex, label) of its owned active cells to rank 0, which builds
the label graph and colours it greedily in a fixed order (largest degree first, then smallest
label), and broadcasts the label -> colour map. Active cells without a label (0) form one node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import tomocell.fem  # noqa: F401  (before dolfinx)
from dolfinx import mesh as dmesh

from tomocell.meshing import tags as T


@dataclass
class BodyColouring:
    """Colour (0..n_colours-1) of every local cell (owned + ghost; -1 outside the active phase)."""

    cell_colour: np.ndarray
    n_colours: int
    colour_of_label: dict[int, int] = field(default_factory=dict)
    n_bodies: int = 0  # labelled particles (+1 if unlabelled active cells exist)
    n_contacts: int = 0  # edges of the label graph (pairs of labels sharing a mesh vertex)


def greedy_colouring(labels: list[int], edges: set[tuple[int, int]]) -> dict[int, int]:
    """Deterministic greedy colouring: nodes by (-degree, label), smallest colour free of neighbours."""
    nbr: dict[int, set[int]] = {int(k): set() for k in labels}
    for a, b in edges:
        nbr.setdefault(a, set()).add(b)
        nbr.setdefault(b, set()).add(a)
    colour: dict[int, int] = {}
    for k in sorted(nbr, key=lambda k: (-len(nbr[k]), k)):
        used = {colour[j] for j in nbr[k] if j in colour}
        c = 0
        while c in used:
            c += 1
        colour[k] = c
    return colour


def label_edges(vertex: np.ndarray, label: np.ndarray) -> set[tuple[int, int]]:
    """Pairs (a < b) of labels that meet at one vertex, from (vertex, label) rows."""
    if vertex.size == 0:
        return set()
    pairs = np.unique(np.stack([vertex, label], axis=1), axis=0)
    v, lab = pairs[:, 0], pairs[:, 1]
    edges: set[tuple[int, int]] = set()
    start = np.nonzero(np.r_[True, v[1:] != v[:-1]])[0]
    stop = np.r_[start[1:], v.size]
    for s, e in zip(start, stop):
        if e - s > 1:
            ls = lab[s:e].tolist()
            edges.update((ls[i], ls[j]) for i in range(len(ls)) for j in range(i + 1, len(ls)))
    return edges


def colour_bodies(msh: dmesh.Mesh, cell_tag: np.ndarray, particle: np.ndarray) -> BodyColouring:
    """The global, partition-independent colouring of the particle bodies (collective)."""
    comm = msh.comm
    tdim = msh.topology.dim
    n_own = msh.topology.index_map(tdim).size_local
    act = cell_tag == T.ACTIVE
    own = np.nonzero(act[:n_own])[0].astype(np.int32)
    msh.topology.create_connectivity(tdim, 0)
    c2v = msh.topology.connectivity(tdim, 0)
    offs = c2v.offsets
    nv = np.diff(offs)[own]
    lv = c2v.array[np.concatenate([np.arange(offs[c], offs[c + 1]) for c in own])] if own.size else np.zeros(0, np.int32)
    gv = msh.topology.index_map(0).local_to_global(lv.astype(np.int32)).astype(np.int64)
    lab = np.repeat(particle[own].astype(np.int64), nv)
    rows = np.unique(np.stack([gv, lab], axis=1), axis=0) if gv.size else np.zeros((0, 2), np.int64)
    got = comm.gather(rows, root=0)
    result = None
    if comm.rank == 0:
        allrows = np.concatenate(got, axis=0)
        order = np.lexsort((allrows[:, 1], allrows[:, 0]))
        allrows = allrows[order]
        labels = sorted(set(allrows[:, 1].tolist()))
        edges = label_edges(allrows[:, 0], allrows[:, 1])
        result = (greedy_colouring(labels, edges), len(labels), len(edges))
    colour, n_bodies, n_edges = comm.bcast(result, root=0)
    n_col = max(colour.values(), default=0) + 1
    lut = np.array([colour.get(int(k), 0) for k in range(int(particle.max(initial=0)) + 1)], dtype=np.int32)
    cc = np.where(act, lut[np.clip(particle, 0, None)], -1).astype(np.int32)
    return BodyColouring(cc, int(n_col), colour, int(n_bodies), int(n_edges))


def single_body(cell_tag: np.ndarray) -> BodyColouring:
    """The connected-cluster model: one c_s field over all active cells (colour 0)."""
    return BodyColouring(np.where(cell_tag == T.ACTIVE, 0, -1).astype(np.int32), 1)
