"""What the half-cell physics needs to know about a tagged mesh: which cells carry which field, the
reaction interface, the collector and Li faces, and the material that cannot carry current (inert).

:func:`analyse_mesh` checks the tags of a :class:`MeshInput` (clear :class:`InputError` on every rank
for unusable meshes) and returns a :class:`Topology` with the integration data of the interface and
boundary measures. Coordinates are in mesh units (micrometres).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import tomocell.fem  # noqa: F401  (before dolfinx)
from dolfinx import fem, mesh as dmesh
from mpi4py import MPI

from tomocell.errors import InputError
from tomocell.meshing import tags as T

#: internal cell tag (never in a mesh file) of porous-CBD cells whose electrolyte is cut off from the
#: separator: they conduct electrons like dense CBD and hold no electrolyte
CBD_DRY = 20
#: the cells that carry phi_s
SOLID_TAGS = (*T.SOLID_CELLS, CBD_DRY)


@dataclass
class MeshInput:
    """The mesh and its tags as the physics needs them (see :mod:`tomocell.meshing.tags`)."""

    mesh: dmesh.Mesh
    cell_tags: dmesh.MeshTags
    facet_tags: dmesh.MeshTags
    particle_tags: dmesh.MeshTags | None = None


def _cell_values_with_ghosts(msh: dmesh.Mesh, tags: dmesh.MeshTags | None, fill: int = -1) -> np.ndarray:
    """Tag value of every local cell (owned and ghost), filled from the owners by a DG0 scatter.

    Tags read from a file may cover only owned cells; the submeshes need ghost cells too.
    """
    tdim = msh.topology.dim
    imap = msh.topology.index_map(tdim)
    n = imap.size_local + imap.num_ghosts
    V0 = fem.functionspace(msh, ("DG", 0))
    f = fem.Function(V0)
    f.x.array[:] = fill
    dofs = V0.dofmap.list[:, 0]
    if tags is not None:
        f.x.array[dofs[tags.indices]] = tags.values
    f.x.scatter_forward()
    return np.rint(f.x.array[dofs[:n]]).astype(np.int32)


def _global_count(comm: MPI.Comm, n: int) -> int:
    return int(comm.allreduce(int(n), op=MPI.SUM))


@dataclass
class Topology:
    """Cells, interface and boundary integration data derived from the tags (owned + ghost cells)."""

    cell_tag: np.ndarray
    particle: np.ndarray
    iface_data: np.ndarray
    cc_solid_data: np.ndarray
    cc_all_data: np.ndarray
    li_data: np.ndarray
    z_min: float
    z_max: float
    counts: dict[str, int] = field(default_factory=dict)
    cell_tag_orig: np.ndarray | None = None  # tags before isolated clusters were set inert (0)
    #: per phase (active, cbd, pore, separator): volume_um3 (whole phase in the mesh), inert_volume_um3
    #: (cut off electronically or ionically and set inert), inert_fraction
    inert: dict[str, dict[str, float]] = field(default_factory=dict)


def _component_labels(msh: dmesh.Mesh, in_group: np.ndarray) -> np.ndarray:
    """Global label (smallest global cell index) of the face-connected component of every local cell
    of ``in_group`` (owned + ghost); -1 outside the group.

    Local components by scipy's connected_components, then a min-propagation over the ranks through
    ghost cells (a DG0 scatter per round) until nothing changes anywhere.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = in_group.size
    f2c = msh.topology.connectivity(2, 3)
    offs = f2c.offsets
    two = np.nonzero(np.diff(offs) == 2)[0]
    a = f2c.array[offs[two]]
    b = f2c.array[offs[two] + 1]
    keep = in_group[a] & in_group[b]
    g = coo_matrix((np.ones(int(keep.sum())), (a[keep], b[keep])), shape=(n, n))
    _, comp = connected_components(g, directed=False)
    V0 = fem.functionspace(msh, ("DG", 0))
    f = fem.Function(V0)
    dofs = V0.dofmap.list[:n, 0]
    gidx = msh.topology.index_map(3).local_to_global(np.arange(n, dtype=np.int32)).astype(float)
    big = np.inf
    label = np.where(in_group, gidx, big)
    while True:
        cmin = np.full(comp.max() + 1 if n else 0, big)
        np.minimum.at(cmin, comp, label)
        new = np.where(in_group, cmin[comp], big)
        f.x.array[dofs] = np.where(np.isfinite(new), new, -1.0)
        f.x.scatter_forward()
        got = f.x.array[dofs]
        new = np.minimum(new, np.where(got >= 0, got, big))
        changed = bool(np.any(new != label))
        label = new
        if not msh.comm.allreduce(changed, op=MPI.LOR):
            break
    return np.where(np.isfinite(label), label, -1).astype(np.int64)


def analyse_mesh(inp: MeshInput, electrolyte_cells: tuple[int, ...] = T.ELECTROLYTE_CELLS) -> Topology:
    """Check the tags and build integration data; InputError (on every rank) on unusable meshes.

    ``electrolyte_cells``: the tags that carry the electrolyte (with the porous-CBD model CBD too,
    :func:`~tomocell.physics.electrolyte_phases.electrolyte_tags`); the reaction interface is the
    facets between ACTIVE cells and those."""
    msh = inp.mesh
    comm = msh.comm
    tdim = msh.topology.dim
    if tdim != 3:
        raise InputError(f"the physics needs a 3D tetrahedral mesh, got topological dimension {tdim}")
    ct = _cell_values_with_ghosts(msh, inp.cell_tags)
    pt = _cell_values_with_ghosts(msh, inp.particle_tags, fill=0) if inp.particle_tags is not None else np.zeros_like(ct)
    n_owned = msh.topology.index_map(tdim).size_local
    counts = {name: _global_count(comm, np.count_nonzero(ct[:n_owned] == tag)) for name, tag in T.CELL_TAGS.items()}
    if counts["active"] == 0:
        raise InputError("mesh has no active-material cells (cell tag ACTIVE = 1)")
    if counts["pore"] + counts["separator"] == 0:
        raise InputError("mesh has no electrolyte cells (cell tags PORE = 3 / SEPARATOR = 4)")
    unknown = set(np.unique(ct[:n_owned]).tolist()) - set(T.CELL_TAGS.values())
    unknown = set().union(*comm.allgather(unknown))
    if unknown:
        raise InputError(f"mesh has cells with unknown or missing tags {sorted(unknown)} (expected {T.CELL_TAGS})")

    fdim = tdim - 1
    msh.topology.create_connectivity(fdim, tdim)
    f2c = msh.topology.connectivity(fdim, tdim)
    fmap = msh.topology.index_map(fdim)
    nf = fmap.size_local
    offs = f2c.offsets
    ncell = np.diff(offs)[:nf]
    ft = inp.facet_tags
    if ft is None:
        raise InputError("mesh has no facet tags (need CURRENT_COLLECTOR = 11 and LI_FACE = 12)")
    for tag, name in ((T.CURRENT_COLLECTOR, "CURRENT_COLLECTOR (11)"), (T.LI_FACE, "LI_FACE (12)")):
        if _global_count(comm, np.count_nonzero(ft.values == tag)) == 0:
            raise InputError(f"mesh has no {name} facet tags")

    # Electronically isolated solid (not connected to the collector through active/CBD cells) and
    # ionically isolated electrolyte (closed pores, not connected to the separator) cannot carry
    # current and would make the potentials singular: they are set inert (tag 0) and reported.
    def seeds(tag: int) -> np.ndarray:
        fac = ft.indices[ft.values == tag]
        fac = fac[np.diff(offs)[fac] == 1]
        mark = np.zeros(ct.size, dtype=bool)
        mark[f2c.array[offs[fac]]] = True
        return mark

    solid = np.isin(ct, T.SOLID_CELLS)
    elec = np.isin(ct, electrolyte_cells)
    lab_e = _component_labels(msh, elec)
    seed_e = set().union(*comm.allgather(set(np.unique(lab_e[seeds(T.LI_FACE) & elec]).tolist())))
    live_e = np.isin(lab_e, list(seed_e)) & elec
    # Solid clusters touching the collector: the cluster holding most active cells carries the
    # current. Other clusters there (e.g. CBD specks on the foil without active material) could only
    # float on a Neumann collector, so they are set inert and reported (counts["solid_clusters_on_cc"]).
    lab_s = _component_labels(msh, solid)
    seed_s = set().union(*comm.allgather(set(np.unique(lab_s[seeds(T.CURRENT_COLLECTOR) & solid]).tolist())))
    own_act = (ct[:n_owned] == T.ACTIVE)
    score = {k: 0 for k in seed_s}
    for k, c in zip(*np.unique(lab_s[:n_owned][own_act], return_counts=True)):
        if int(k) in score:
            score[int(k)] += int(c)
    tot: dict[int, int] = {}
    for d in comm.allgather(score):
        for k, v in d.items():
            tot[k] = tot.get(k, 0) + v
    counts["solid_clusters_on_cc"] = len(tot)
    best = max(tot, key=lambda k: (tot[k], -k)) if tot else -2
    live_s = (lab_s == best) & solid
    # a CBD cell that carries electrolyte (porous CBD) but whose electrolyte is cut off from the
    # separator still conducts electrons: it becomes "dry" CBD (no electrolyte, no reaction) instead
    # of inert, so cutting its pores off does not cut the electron paths through it
    dry = (ct == T.CBD) & elec & ~live_e & live_s
    dead = ((solid & ~live_s) | (elec & ~live_e)) & ~dry
    counts["dry_cbd_cells"] = _global_count(comm, np.count_nonzero(dry[:n_owned]))
    counts["isolated_active_cells"] = _global_count(comm, np.count_nonzero(dead[:n_owned] & (ct[:n_owned] == T.ACTIVE)))
    counts["isolated_cbd_cells"] = _global_count(comm, np.count_nonzero(dead[:n_owned] & (ct[:n_owned] == T.CBD)))
    counts["isolated_electrolyte_cells"] = _global_count(comm, np.count_nonzero(dead[:n_owned] & elec[:n_owned]))
    inert = _inert_volumes(msh, ct[:n_owned], dead[:n_owned])
    ct_orig = ct.copy()
    ct = np.where(dead, 0, np.where(dry, CBD_DRY, ct)).astype(np.int32)
    if _global_count(comm, np.count_nonzero(ct[:n_owned] == T.ACTIVE)) == 0:
        raise InputError("no active material is electronically connected to the current collector")
    two = np.nonzero(ncell == 2)[0].astype(np.int32)
    c0 = f2c.array[offs[two]]
    c1 = f2c.array[offs[two] + 1]
    t0, t1 = ct[c0], ct[c1]
    is_e0 = np.isin(t0, electrolyte_cells)
    is_e1 = np.isin(t1, electrolyte_cells)
    react = ((t0 == T.ACTIVE) & is_e1) | ((t1 == T.ACTIVE) & is_e0)
    rfacets = two[react]
    data = np.asarray(fem.compute_integration_domains(fem.IntegralType.interior_facet, msh.topology, rfacets),
                      dtype=np.int32).reshape(-1, 4)
    swap = ct[data[:, 0]] != T.ACTIVE
    data[swap] = data[swap][:, [2, 3, 0, 1]]
    assert np.all(ct[data[:, 0]] == T.ACTIVE) and np.all(np.isin(ct[data[:, 2]], electrolyte_cells))
    counts["reaction_facets"] = _global_count(comm, data.shape[0])
    if counts["reaction_facets"] == 0:
        raise InputError("mesh has no active/electrolyte interface facets: no reaction surface")

    # boundary facets from the facet tags (owned facets only)
    fidx, fval = ft.indices, ft.values
    own = fidx < nf
    fidx, fval = fidx[own], fval[own]

    def ext(tag: int, phases: tuple[int, ...] | None) -> np.ndarray:
        facets = fidx[fval == tag].astype(np.int32)
        facets = facets[ncell[facets] == 1]
        if phases is not None:
            cells = f2c.array[offs[facets]]
            facets = facets[np.isin(ct[cells], phases)]
        return np.asarray(fem.compute_integration_domains(fem.IntegralType.exterior_facet, msh.topology, np.sort(facets)),
                          dtype=np.int32)

    cc_all = ext(T.CURRENT_COLLECTOR, None)
    cc_solid = ext(T.CURRENT_COLLECTOR, SOLID_TAGS)
    li = ext(T.LI_FACE, electrolyte_cells)
    counts["cc_facets"] = _global_count(comm, cc_all.size // 2)
    counts["cc_solid_facets"] = _global_count(comm, cc_solid.size // 2)
    counts["li_facets"] = _global_count(comm, li.size // 2)
    if counts["cc_facets"] == 0:
        raise InputError("mesh has no CURRENT_COLLECTOR (11) facet tags")
    if counts["cc_solid_facets"] == 0:
        raise InputError("no active/CBD cell touches the current collector: the electrode is not connected")
    if counts["li_facets"] == 0:
        raise InputError("mesh has no LI_FACE (12) facet tags on electrolyte cells")
    x = msh.geometry.x
    z_min = comm.allreduce(float(x[:, 2].min()) if x.size else np.inf, op=MPI.MIN)
    z_max = comm.allreduce(float(x[:, 2].max()) if x.size else -np.inf, op=MPI.MAX)
    return Topology(ct, pt, data.flatten(), cc_solid, cc_all, li, z_min, z_max, counts, ct_orig, inert)


def _inert_volumes(msh: dmesh.Mesh, tags_owned: np.ndarray, dead_owned: np.ndarray) -> dict[str, dict[str, float]]:
    """Volume of each phase and of its part set inert (owned cells, summed over ranks), in mesh units^3."""
    x = msh.geometry.x
    dm = np.asarray(msh.geometry.dofmaps[0])[: tags_owned.size, :4]
    a = x[dm[:, 0]]
    vol = np.abs(np.einsum("ij,ij->i", np.cross(x[dm[:, 1]] - a, x[dm[:, 2]] - a), x[dm[:, 3]] - a)) / 6.0
    out: dict[str, dict[str, float]] = {}
    for name, tag in T.CELL_TAGS.items():
        sel = tags_owned == tag
        tot = float(msh.comm.allreduce(float(vol[sel].sum()), op=MPI.SUM))
        dv = float(msh.comm.allreduce(float(vol[sel & dead_owned].sum()), op=MPI.SUM))
        out[name] = {"volume_um3": tot, "inert_volume_um3": dv, "inert_fraction": dv / tot if tot > 0 else 0.0}
    return out
