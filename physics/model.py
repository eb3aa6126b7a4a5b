"""Weak forms of the particle-resolved half-cell model on one parent mesh with four submeshes.

Unknowns (P1 Lagrange, each on its own submesh of the parent mesh, dimensionless or volts):

* ``cs`` = c_s / c_max on ACTIVE cells (Fick diffusion, D_s(x)),
* ``ps`` = phi_s [V] on ACTIVE + CBD cells (Ohm's law, continuous across their contacts),
* ``ce`` = c_e / c_e0 on PORE + SEPARATOR cells, ``pe`` = phi_e [V] on the same cells
  (concentrated-solution theory with electroneutrality, binary salt; the separator is homogenised:
  porosity eps in the storage term, eps^b (Bruggeman) on kappa and D).

Interface (ACTIVE against PORE or SEPARATOR, one ``dS`` measure with "+" on the active side):
Butler-Volmer current density ``i_n = i0 [exp(a_a eta/V_T) - exp(-a_c eta/V_T)]`` [A/m^2],
positive anodic (Li leaves the particle); i0 = F k c_e^a_a (c_max - c_s)^a_a c_s^a_c,
eta = phi_s - phi_e - U(c_s/c_max). The Li flux into the particle is -i_n/F, the Li+ flux into the
electrolyte +i_n/F; CBD/electrolyte and CBD/active carry no reaction.
Boundaries: current collector (z = 0, solid facets only): galvanostatic current density
(``i_app`` [A/m^2] per projected area, > 0 on discharge, spread over the solid contact area) or a
fixed potential; Li face (top of the separator): Li-metal Butler-Volmer with phi_Li = 0
(``li_kinetics="butler-volmer"``) or ``"ideal"`` (phi_e = 0, uniform Li+ inflow); sides: no flux.

Scaling: mesh coordinates are micrometres (``length_unit`` = 1e-6 m); every equation is written per
(length unit)^3 and multiplied by a constant (l^2/D_s, l^2/sigma, l^2/D_e, -l^2/kappa) so that its
stiffness coefficient is O(1); concentrations are scaled by c_max and c_e0; potentials are in volts.
The interface terms use one quadrature rule for the solid and electrolyte sides, so Li is conserved
to round-off whatever the mesh.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import tomocell.fem  # noqa: F401  (before dolfinx)
import ufl
from dolfinx import fem, mesh as dmesh
from petsc4py import PETSc
from mpi4py import MPI

from tomocell.errors import InputError, TomocellError
from tomocell.log import get_logger
from tomocell.meshing import tags as T
from tomocell.physics.parameters import FARADAY, Parameters

log = get_logger(__name__)

IFACE = 1  # dS subdomain id of the reaction interface
CC_SOLID = 1  # ds subdomain ids
LI = 2
CC_ALL = 3

FIELD_NAMES = ("c_s", "phi_s", "c_e", "phi_e")
SPLIT_NAMES = ("cs", "ps", "ce", "pe")  # fieldsplit names: options prefix <prefix>fieldsplit_<name>_


def _csr_keys(M: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CSR of the owned rows of a PETSc AIJ matrix and one int64 key (row * N + global column) per entry."""
    ai, aj, av = M.getValuesCSR()
    n = np.int64(M.getSize()[1])
    rows = np.repeat(np.arange(ai.size - 1, dtype=np.int64), np.diff(ai)) + M.getOwnershipRange()[0]
    return ai, aj, av, rows * n + aj.astype(np.int64)


def iterative_options() -> dict[str, Any]:
    """PETSc options of the scalable linear solver (relative to the model's options prefix).

    GMRES preconditioned by a multiplicative (block Gauss-Seidel) field split in the order
    c_s, phi_s, c_e, phi_e, one smoothed-aggregation AMG V-cycle (GAMG) per field. This works because
    the residual is written so that every diagonal block is an O(1)-scaled elliptic or
    mass + diffusion operator and every off-diagonal coupling is weak against it: the Butler-Volmer
    terms are small next to the scaled conduction/diffusion terms, and the migration coupling of the
    electrolyte mass rows to phi_e is removed by the salt-balance row combination (see
    ``HalfCellModel._build_forms``).
    """
    o: dict[str, Any] = {
        "ksp_type": "gmres", "ksp_rtol": 1e-10, "ksp_atol": 1e-14, "ksp_max_it": 400,
        "ksp_gmres_restart": 200, "ksp_pc_side": "right", "ksp_norm_type": "unpreconditioned",
        "pc_type": "fieldsplit", "pc_fieldsplit_type": "multiplicative",
        "pc_fieldsplit_off_diag_use_amat": True,
    }
    for name in SPLIT_NAMES:
        f = f"fieldsplit_{name}_"
        o.update({f + "ksp_type": "preonly", f + "pc_type": "gamg", f + "pc_gamg_threshold": 0.02})
    return o


def newton_convergence(it: int, xnorm: float, gnorm: float, fnorm: float, fnorms: list[float], max_it: int) -> int:
    """PETSc SNES convergence reason for Newton iteration ``it`` (``fnorms``: residual norms so far,
    ``fnorms[0]`` the initial one, the last ``fnorm``); > 0 converged, < 0 diverged, 0 continue.

    Newton with the exact Jacobian stops on a small residual (1e-11 relative, 1e-13 absolute) with a
    small update, or when the update is at round-off, so Li is conserved to ~1e-13. Third case: the
    residual has reached the round-off floor of an ill-conditioned Jacobian. Once the electrolyte is
    depleted (c_e ~ 0 somewhere) the residual stalls at ~1e-10 after one or two quadratic iterations
    and the update stays noisy, so neither test can pass and every step size failed (measured: 75 um
    electrode at 10C, residual 1e-4 -> 8e-10 -> 2.9e-10 -> flat for 13 iterations, down to
    dt = 2e-4 s). Accepted when the residual fell by >= 1e5, is below 1e-8 (the scaled state is O(1))
    and made no progress over two iterations.
    """
    if not np.isfinite(fnorm):
        return -4  # SNES_DIVERGED_FNORM_NAN
    f0 = fnorms[0]
    if it == 0:
        return 2 if fnorm < 1e-14 else 0  # SNES_CONVERGED_FNORM_ABS
    if fnorm <= max(1e-13, 1e-11 * f0) and gnorm <= 1e-8 * max(1.0, xnorm):
        return 3  # SNES_CONVERGED_FNORM_RELATIVE
    if gnorm <= 1e-13 * max(1.0, xnorm):
        return 4  # SNES_CONVERGED_SNORM_RELATIVE
    if it >= 3 and fnorm <= 1e-5 * f0 and fnorm <= 1e-8 and fnorm >= 0.7 * fnorms[-3]:
        return 5  # SNES_CONVERGED_ITS: at the round-off floor
    if it >= max_it:
        return -5  # SNES_DIVERGED_MAX_IT
    return 0


def exchange_current_density(p: Parameters, theta: Any, c: Any) -> Any:
    """i0 = F k c^alpha_a (c_max (1 - theta))^alpha_a (c_max theta)^alpha_c [A/m^2] at the stoichiometry
    theta and the salt concentration c [mol/m^3]: the one formula, for UFL (the residual) and numpy
    arrays (the interface table) alike; the callers clamp theta into (0, 1) and c above 0."""
    return FARADAY * p.k_ct * c**p.alpha_a * (p.c_max * (1 - theta))**p.alpha_a * (p.c_max * theta)**p.alpha_c


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


def analyse_mesh(inp: MeshInput) -> Topology:
    """Check the tags and build integration data; InputError (on every rank) on unusable meshes."""
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
    elec = np.isin(ct, T.ELECTROLYTE_CELLS)
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
    dead = (solid & ~live_s) | (elec & ~live_e)
    counts["isolated_active_cells"] = _global_count(comm, np.count_nonzero(dead[:n_owned] & (ct[:n_owned] == T.ACTIVE)))
    counts["isolated_cbd_cells"] = _global_count(comm, np.count_nonzero(dead[:n_owned] & (ct[:n_owned] == T.CBD)))
    counts["isolated_electrolyte_cells"] = _global_count(comm, np.count_nonzero(dead[:n_owned] & elec[:n_owned]))
    inert = _inert_volumes(msh, ct[:n_owned], dead[:n_owned])
    ct_orig = ct.copy()
    ct = np.where(dead, 0, ct).astype(np.int32)
    if _global_count(comm, np.count_nonzero(ct[:n_owned] == T.ACTIVE)) == 0:
        raise InputError("no active material is electronically connected to the current collector")
    two = np.nonzero(ncell == 2)[0].astype(np.int32)
    c0 = f2c.array[offs[two]]
    c1 = f2c.array[offs[two] + 1]
    t0, t1 = ct[c0], ct[c1]
    is_e0 = np.isin(t0, T.ELECTROLYTE_CELLS)
    is_e1 = np.isin(t1, T.ELECTROLYTE_CELLS)
    react = ((t0 == T.ACTIVE) & is_e1) | ((t1 == T.ACTIVE) & is_e0)
    rfacets = two[react]
    data = np.asarray(fem.compute_integration_domains(fem.IntegralType.interior_facet, msh.topology, rfacets),
                      dtype=np.int32).reshape(-1, 4)
    swap = ct[data[:, 0]] != T.ACTIVE
    data[swap] = data[swap][:, [2, 3, 0, 1]]
    assert np.all(ct[data[:, 0]] == T.ACTIVE) and np.all(np.isin(ct[data[:, 2]], T.ELECTROLYTE_CELLS))
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
    cc_solid = ext(T.CURRENT_COLLECTOR, T.SOLID_CELLS)
    li = ext(T.LI_FACE, T.ELECTROLYTE_CELLS)
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


class HalfCellModel:
    """The coupled four-field problem; one backward-Euler step per :meth:`solve_step`.

    Parameters
    ----------
    inp : the parent mesh (micrometres) with cell/facet/particle tags.
    params : :class:`~tomocell.physics.parameters.Parameters`.
    li_kinetics : "butler-volmer" (default) or "ideal".
    linear_solver : "direct" (MUMPS LU, reused over ``lu_lag`` Jacobians) or "iterative" (GMRES +
        multiplicative field split with one GAMG V-cycle per field, :func:`iterative_options`;
        Krylov iterations per Newton step flat under mesh refinement, see scripts/bench_physics.py).
    solver_options : PETSc options (relative to ``petsc_prefix``) overriding the defaults, e.g.
        ``{"ksp_rtol": 1e-8}`` or ``{"fieldsplit_ps_pc_gamg_threshold": 0.05}`` (splits cs, ps, ce, pe).
    quadrature_degree : quadrature for every integral (2 is exact enough for P1 with smooth data).
    predictor : start Newton from a linear extrapolation of the last two accepted states.
    direct_fallback_dof_limit : with the iterative solver, a Newton step whose linear solve fails
        (GMRES not converged) is redone from the same start with MUMPS LU, and the model stays on LU
        from then on (``solver_switches`` records when), if the model has at most this many DOFs
        (0 disables it). The field split relies on weak off-diagonal blocks; once the electrolyte
        depletes at high rate (c_e -> 0: kappa -> 0 and the diffusion-potential term ~ 1/c_e) they are
        no longer weak and GMRES stalls, which used to cut the time step to milliseconds.
    extra_residual : optional callable(model, tests) -> UFL form added to the residual (used by the
        method of manufactured solutions test).
    """

    def __init__(
        self,
        inp: MeshInput,
        params: Parameters,
        *,
        li_kinetics: str = "butler-volmer",
        linear_solver: str = "direct",
        quadrature_degree: int = 2,
        length_unit: float = T.LENGTH_UNIT_M,
        extra_residual: Callable[[HalfCellModel, list[Any]], Any] | None = None,
        petsc_prefix: str = "tomocell_",
        lu_lag: int = 3,
        solver_options: dict[str, Any] | None = None,
        predictor: bool = True,
        direct_fallback_dof_limit: int = 2_000_000,
    ):
        if li_kinetics not in ("butler-volmer", "ideal"):
            raise InputError(f"li_kinetics must be 'butler-volmer' or 'ideal', got {li_kinetics!r}")
        if linear_solver not in ("direct", "iterative"):
            raise InputError(f"linear_solver must be 'direct' or 'iterative', got {linear_solver!r}")
        self.inp = inp
        self.p = params
        self.li_kinetics = li_kinetics
        self.linear_solver = linear_solver
        self.direct_fallback_dof_limit = int(direct_fallback_dof_limit)
        #: (time-step length [s], reason) of each switch from the iterative solver to LU
        self.solver_switches: list[dict[str, Any]] = []
        self.lu_lag = int(lu_lag)
        self.solver_options = dict(solver_options or {})
        self.predictor = bool(predictor)
        self.ell = float(length_unit)
        self.topo = analyse_mesh(inp)
        self.comm = inp.mesh.comm
        msh = inp.mesh
        tdim = msh.topology.dim
        ct = self.topo.cell_tag

        def sub(tags: tuple[int, ...]):
            cells = np.sort(np.nonzero(np.isin(ct, tags))[0]).astype(np.int32)
            sm, emap = dmesh.create_submesh(msh, tdim, cells)[:2]
            return sm, emap

        self.sm_s, em_s = sub((T.ACTIVE,))
        self.sm_p, em_p = sub(T.SOLID_CELLS)
        self.sm_e, em_e = sub(T.ELECTROLYTE_CELLS)
        self.entity_maps = [em_s, em_p, em_e]
        V_cs = fem.functionspace(self.sm_s, ("Lagrange", 1))
        V_ps = fem.functionspace(self.sm_p, ("Lagrange", 1))
        V_ce = fem.functionspace(self.sm_e, ("Lagrange", 1))
        V_pe = fem.functionspace(self.sm_e, ("Lagrange", 1))
        self.spaces = [V_cs, V_ps, V_ce, V_pe]
        self.u = [fem.Function(V, name=n) for V, n in zip(self.spaces, FIELD_NAMES)]
        self.cs_n = fem.Function(V_cs, name="c_s_old")
        self.ce_n = fem.Function(V_ce, name="c_e_old")
        self.dt = fem.Constant(msh, 1.0)  # s
        self.i_app = fem.Constant(msh, 0.0)  # A/m^2 of projected collector area, > 0 on discharge
        self.v_set = fem.Constant(msh, 0.0)  # V, potentiostatic mode only
        self.potentiostatic = False

        q = {"quadrature_degree": int(quadrature_degree)}
        self.dx = ufl.Measure("dx", domain=msh, subdomain_data=inp.cell_tags, metadata=q)
        # cell tags given to dx must cover ghosts too: rebuild them from the scattered values
        n_loc = ct.size
        all_cells = np.arange(n_loc, dtype=np.int32)
        self._ct_full = dmesh.meshtags(msh, tdim, all_cells, ct)
        self.dx = ufl.Measure("dx", domain=msh, subdomain_data=self._ct_full, metadata=q)
        self.dS = ufl.Measure("dS", domain=msh, subdomain_data=[(IFACE, self.topo.iface_data)], metadata=q)
        self.ds = ufl.Measure("ds", domain=msh, subdomain_data=[(CC_SOLID, self.topo.cc_solid_data),
                                                                 (LI, self.topo.li_data),
                                                                 (CC_ALL, self.topo.cc_all_data)], metadata=q)
        # geometric measures (in length_unit^k)
        self.area_cc = self._assemble(fem.Constant(msh, 1.0) * self.ds(CC_ALL))
        self.area_cc_solid = self._assemble(fem.Constant(msh, 1.0) * self.ds(CC_SOLID))
        self.area_li = self._assemble(fem.Constant(msh, 1.0) * self.ds(LI))
        self.area_iface = self._assemble(fem.Constant(msh, 1.0) * self.dS(IFACE))
        self.vol = {name: self._assemble(fem.Constant(msh, 1.0) * self.dx(tag)) for name, tag in T.CELL_TAGS.items()}

        # scales
        p = params
        x0, _ = p.theta_limits()
        self.scale_Ds = float(np.asarray(p.D_s(x=x0)))
        self.scale_sigma = p.sigma_active
        self.scale_De = float(np.asarray(p.D_e(c=p.c_e0, T=p.temperature)))
        self.scale_kappa = float(np.asarray(p.kappa(c=p.c_e0, T=p.temperature)))
        t0 = float(np.asarray(p.t_plus(c=p.c_e0, T=p.temperature)))
        self.beta_salt = t0 * self.scale_kappa / (FARADAY * p.c_e0 * self.scale_De)
        self.extra_residual = extra_residual
        self._build_forms()
        self._build_solver(petsc_prefix)

    # ---- constitutive expressions (UFL), shared by residual, outputs and tests -----------------
    def ocp(self, cs: Any) -> Any:
        """U(x) on the valid range, continued linearly with the end slopes outside it, so Newton still
        sees a driving force when P1 nodes overshoot full lithiation near the cut-off."""
        lo, hi = self.p.ocp_valid
        h = 1e-6 * (hi - lo)
        s_lo = float((self.p.ocp(x=lo + h) - self.p.ocp(x=lo)) / h)
        s_hi = float((self.p.ocp(x=hi) - self.p.ocp(x=hi - h)) / h)
        inner = self.p.ocp(x=ufl.min_value(ufl.max_value(cs, lo), hi), ufl=True)
        return inner + s_hi * ufl.max_value(cs - hi, 0.0) + s_lo * ufl.min_value(cs - lo, 0.0)

    def exchange_current(self, cs: Any, ce: Any) -> Any:
        """i0 [A/m^2] from the scaled concentrations."""
        p = self.p
        th = ufl.min_value(ufl.max_value(cs, 1e-9), 1 - 1e-9)
        c = ufl.max_value(ce, 1e-9) * p.c_e0
        return exchange_current_density(p, th, c)

    def overpotential(self, cs: Any, ps: Any, pe: Any) -> Any:
        return ps - pe - self.ocp(cs)

    def reaction_current(self, cs: Any, ps: Any, ce: Any, pe: Any) -> Any:
        """Butler-Volmer i_n [A/m^2], positive anodic (Li out of the particle)."""
        p = self.p
        eta = self.overpotential(cs, ps, pe)
        vt = p.thermal_voltage
        return self.exchange_current(cs, ce) * (ufl.exp(p.alpha_a * eta / vt) - ufl.exp(-p.alpha_c * eta / vt))

    def li_current(self, ce: Any, pe: Any) -> Any:
        """Li-metal Butler-Volmer current density [A/m^2] into the electrolyte (> 0: stripping)."""
        p = self.p
        eta = -pe  # phi_Li = 0, U_Li = 0
        vt = p.thermal_voltage
        i0 = p.li_i0 * ufl.max_value(ce, 1e-9) ** p.li_c_exponent
        return i0 * (ufl.exp(p.li_alpha_a * eta / vt) - ufl.exp(-p.li_alpha_c * eta / vt))

    def electrolyte_props(self, ce: Any) -> tuple[Any, Any, Any, Any]:
        """kappa [S/m], D [m^2/s], t+, kappa_D/kappa factor 2 V_T (1-t+) TDF [V] at scaled ce."""
        p = self.p
        lo, hi = p.c_e_valid
        c = ufl.min_value(ufl.max_value(ce * p.c_e0, lo), hi)
        kap = p.kappa(c=c, T=p.temperature, ufl=True)
        D = p.D_e(c=c, T=p.temperature, ufl=True)
        tp = p.t_plus(c=c, T=p.temperature, ufl=True)
        tdf = p.tdf(c=c, T=p.temperature, ufl=True)
        return kap, D, tp, 2.0 * p.thermal_voltage * (1.0 - tp) * tdf

    def ionic_current(self, ce: Any, pe: Any, tau: float = 1.0) -> Any:
        """i_e [A/m^2] times length_unit (gradients are per length unit)."""
        kap, _, _, kd = self.electrolyte_props(ce)
        return tau * kap * (-ufl.grad(pe) + kd * ufl.grad(ce) / ufl.max_value(ce, 1e-9))

    def li_flux(self, ce: Any, pe: Any, eps: float = 1.0, tau: float = 1.0) -> Any:
        """Li+ flux N [mol/m^2/s] times length_unit / c_e0 (scaled)."""
        _, D, tp, _ = self.electrolyte_props(ce)
        return -tau * D * ufl.grad(ce) + tp * self.ionic_current(ce, pe, tau) / (FARADAY * self.p.c_e0)

    # ---- residual --------------------------------------------------------------------------------
    def residual(self, u: list[Any], cs_old: Any, ce_old: Any, tests: list[Any]) -> Any:
        """The scaled residual form for states ``u`` (Functions or UFL expressions)."""
        cs, ps, ce, pe = u
        v, q, w, r = tests
        p = self.p
        ell, F = self.ell, FARADAY
        dx, dS, ds = self.dx, self.dS, self.ds
        dt = self.dt
        i_n = self.reaction_current(cs("+"), ps("+"), ce("-"), pe("-"))
        eps, brug = p.sep_porosity, p.sep_bruggeman
        tau_sep = eps**brug

        # particles: c_max dc/dt = div(D_s grad c); Li flux -i_n/F enters through the interface
        Ds = p.D_s(x=ufl.min_value(ufl.max_value(cs, 0.0), 1.0), ufl=True) if not p.D_s.is_constant else p.D_s()
        W = ell**2 / self.scale_Ds
        Fcs = W * ((cs - cs_old) / dt * v * dx(T.ACTIVE) + Ds / ell**2 * ufl.inner(ufl.grad(cs), ufl.grad(v)) * dx(T.ACTIVE)
                   + i_n / (F * p.c_max * ell) * v("+") * dS(IFACE))
        # solid potential: div(sigma grad phi_s) = 0; i_n leaves into the electrolyte; i_app leaves at z = 0
        W = ell**2 / self.scale_sigma
        i_cc = self.i_app * self.area_cc / self.area_cc_solid  # A/m^2 on the solid contact area
        Fps = W * (p.sigma_active / ell**2 * ufl.inner(ufl.grad(ps), ufl.grad(q)) * dx(T.ACTIVE)
                   + p.sigma_cbd / ell**2 * ufl.inner(ufl.grad(ps), ufl.grad(q)) * dx(T.CBD)
                   + i_n / ell * q("+") * dS(IFACE))
        if not self.potentiostatic:
            Fps += W * i_cc / ell * q * ds(CC_SOLID)
        # electrolyte mass: eps dc/dt + div N = 0, N = -D grad c + t+ i_e / F
        W = ell**2 / self.scale_De
        Fce = 0
        Fpe = 0
        for tag, e, tau in ((T.PORE, 1.0, 1.0), (T.SEPARATOR, eps, tau_sep)):
            Fce += W * (e * (ce - ce_old) / dt * w * dx(tag) - ufl.inner(self.li_flux(ce, pe, e, tau), ufl.grad(w)) / ell**2 * dx(tag))
            Fpe += -ell**2 / self.scale_kappa * ufl.inner(self.ionic_current(ce, pe, tau), ufl.grad(r)) / ell**2 * dx(tag)
        if self.li_kinetics == "butler-volmer":
            i_li = self.li_current(ce, pe)
        else:
            i_li = self.i_app * self.area_cc / self.area_li
        Fce += W * (-i_n / (F * p.c_e0 * ell) * w("-") * dS(IFACE) - i_li / (F * p.c_e0 * ell) * w * ds(LI))
        # electrolyte charge: div i_e = 0; i_n enters at the interface, i_li at the Li face
        Wk = -ell**2 / self.scale_kappa
        Fpe += Wk * (i_n / ell * r("-") * dS(IFACE))
        if self.li_kinetics == "butler-volmer":
            Fpe += Wk * (i_li / ell * r * ds(LI))
        return Fcs + Fps + Fce + Fpe

    def _build_forms(self) -> None:
        W = ufl.MixedFunctionSpace(*self.spaces)
        self.tests = list(ufl.TestFunctions(W))
        R = self.residual(self.u, self.cs_n, self.ce_n, self.tests)
        if self.extra_residual is not None:
            R = R + self.extra_residual(self, self.tests)
        self.F_ufl = R
        blocks = list(ufl.extract_blocks(R))
        if self.li_kinetics == "butler-volmer":
            # Salt-balance form of the electrolyte mass rows: (mass rows) - beta x (charge rows), with
            # beta = t+(c_e0) kappa0 / (F c_e0 D_e0) in the scaled units. c_e and phi_e share one space,
            # so this is an exact, invertible combination of rows: same discrete solution, same Newton
            # iterates, same Li balance. It cancels the migration term t+ i_e / F (exactly at t+ =
            # t+(c_e0)), whose phi_e coupling is ~13x the c_e diffusion and would make any block
            # preconditioner of the (c_e, phi_e) pair diverge; what is left is near-triangular.
            # (With the "ideal" Li electrode phi_e has Dirichlet rows, which a row combination
            # would not respect, so it is kept in the plain form there.)
            blocks[2] = blocks[2] - self.beta_salt * ufl.replace(blocks[3], {self.tests[3]: self.tests[2]})
        self.F_blocks = blocks

    def set_potentiostatic(self, voltage: float | None) -> None:
        """Switch to a fixed collector potential (volts; phi_s = voltage on the collector contact,
        the current follows) or back to galvanostatic operation with ``None``. The potentiostatic
        problem (its own forms and SNES) is built on first use; the state is shared."""
        if voltage is None:
            self.potentiostatic = False
            return
        if self.li_kinetics != "butler-volmer":
            raise InputError("potentiostatic (CV) operation needs the Butler-Volmer Li electrode (li_kinetics)")
        self.v_set.value = float(voltage)
        if not hasattr(self, "_problem_cv"):
            keep = (self.problem, self.F_blocks, self.bcs, self._prefix)
            self.potentiostatic = True
            self._build_forms()
            self._build_solver(self._prefix + "cv_")
            self._problem_cv = self.problem
            self.problem, self.F_blocks, self.bcs, self._prefix = keep
        self.potentiostatic = True

    def _dirichlet(self) -> list[fem.DirichletBC]:
        bcs = []
        tol = 1e-8 * max(1.0, abs(self.topo.z_max))
        if self.li_kinetics == "ideal":
            sm = self.sm_e
            sm.topology.create_connectivity(2, 3)
            facets = dmesh.locate_entities_boundary(sm, 2, lambda x: np.abs(x[2] - self.topo.z_max) < tol)
            dofs = fem.locate_dofs_topological(self.spaces[3], 2, facets)
            bcs.append(fem.dirichletbc(0.0, dofs, self.spaces[3]))
        if self.potentiostatic:
            sm = self.sm_p
            sm.topology.create_connectivity(2, 3)
            facets = dmesh.locate_entities_boundary(sm, 2, lambda x: np.abs(x[2] - self.topo.z_min) < tol)
            dofs = fem.locate_dofs_topological(self.spaces[1], 2, facets)
            bcs.append(fem.dirichletbc(self.v_set, dofs, self.spaces[1]))
        return bcs

    def _build_solver(self, prefix: str) -> None:
        from dolfinx.fem.petsc import NonlinearProblem

        # options left in PETSc's global database by an earlier model with the same prefix (the split
        # options stay there until a preconditioner is set up) would silently apply to this one: a direct
        # model built after an iterative one inherited right preconditioning and an unpreconditioned
        # norm, and its lagged-LU GMRES then failed after a current switch
        db = PETSc.Options()
        for key in list(db.getAll()):
            if key.startswith(prefix):
                db.delValue(key)
        opts: dict[str, Any] = {
            "snes_type": "newtonls",
            "snes_linesearch_type": "basic",
            "snes_max_it": 15,
            "snes_rtol": 1e-11,
            "snes_atol": 1e-13,
            "snes_stol": 0.0,
        }
        if self.linear_solver == "direct":
            # LU (MUMPS) refactorised every `lag` Jacobians and used as the preconditioner of GMRES
            # in between: the Newton steps still use the exact Jacobian, the factorisation (the
            # dominant cost) is reused across Newton iterations and time steps.
            opts.update({"ksp_type": "gmres", "ksp_rtol": 1e-12, "ksp_atol": 1e-16, "ksp_max_it": 50,
                         "pc_type": "lu", "pc_factor_mat_solver_type": "mumps",
                         "snes_lag_preconditioner": self.lu_lag, "snes_lag_preconditioner_persists": True})
            kind = "mpi"
            P = None
        else:
            opts.update({k: v for k, v in iterative_options().items() if not k.startswith("fieldsplit_")})
            kind = "nest"
            P = None  # the Jacobian itself is the preconditioning matrix (no second assembly)
        # user overrides last; options of the split solvers stay in the options database, because
        # PETSc reads them only when the preconditioner is first set up (after this returns)
        nested = {k: v for k, v in iterative_options().items() if k.startswith("fieldsplit_")}
        for k, v in self.solver_options.items():
            (nested if k.startswith("fieldsplit_") else opts)[k] = v
        self.bcs = self._dirichlet()
        self._prefix = prefix
        self.problem = NonlinearProblem(
            self.F_blocks, self.u, bcs=self.bcs, P=P, kind=kind, petsc_options_prefix=prefix,
            petsc_options=opts, entity_maps=self.entity_maps,
        )
        if kind == "nest":
            pc = self.problem.solver.getKSP().getPC()
            if pc.getType() == "fieldsplit":
                db = PETSc.Options()
                for k, v in nested.items():
                    db[prefix + k] = v
                isets = self.problem.A.getNestISs()[0]
                pc.setFieldSplitIS(*[(SPLIT_NAMES[i], isets[i]) for i in range(4)])
                self._use_compressed_blocks(self.problem)
        snes = self.problem.solver

        def converged(snes, it, norms):  # noqa: ANN001
            xnorm, gnorm, fnorm = norms
            if it == 0:
                self._fhist = []
            self._fhist.append(fnorm)
            return newton_convergence(it, xnorm, gnorm, fnorm, self._fhist, snes.getTolerances()[3])

        snes.setConvergenceTest(converged)

    def _use_compressed_blocks(self, problem: Any) -> None:
        """Give the field split diagonal blocks without the spurious sparsity entries.

        DOLFINx 0.11 builds the sparsity of an interface (``dS``) block from both cells of every
        facet, also where one side is not in the field's submesh; such entries are never written
        (they stay exactly zero) but couple dofs far apart. Smoothed-aggregation AMG then forms
        Galerkin products over them: the coarse operators become dense (operator complexity 5-15 on
        the 96 k-tet demo mesh). Each diagonal block is therefore copied, every Jacobian, into a matrix
        holding only the couplings of dofs that share a cell of the field's submesh, and that copy
        is the preconditioning matrix of the split (values identical; the off-diagonal blocks of the
        Gauss-Seidel sweep and GMRES use the Jacobian itself).
        """
        from dolfinx.fem.petsc import assemble_jacobian, assemble_matrix

        A = problem.A
        A.zeroEntries()
        assemble_matrix(A, problem.J, self.bcs, diag=1.0)  # the pattern (values are not used)
        A.assemble()
        isets = A.getNestISs()[0]
        masks, comp = [], []
        domains = ((T.ACTIVE,), T.SOLID_CELLS, T.ELECTROLYTE_CELLS, T.ELECTROLYTE_CELLS)
        for i, V in enumerate(self.spaces):
            B = A.getNestSubMatrix(i, i)
            # the P1 mass matrix of the field's cells is > 0 exactly for dof pairs sharing a cell,
            # including couplings assembled on other ranks
            M = assemble_matrix(fem.form(ufl.TrialFunction(V) * ufl.TestFunction(V) * self.dx(domains[i]),
                                         entity_maps=self.entity_maps))
            M.assemble()
            _, _, mv, mkeys = _csr_keys(M)
            M.destroy()
            ai, aj, _, keys = _csr_keys(B)
            masks.append(np.isin(keys, mkeys[mv != 0]))
            rows = np.repeat(np.arange(ai.size - 1), np.diff(ai))[masks[-1]]
            ai2 = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=ai.size - 1))]).astype(PETSc.IntType)
            C = PETSc.Mat().createAIJ(B.getSizes(), csr=(ai2, aj[masks[-1]].astype(PETSc.IntType),
                                                         np.zeros(rows.size)), comm=B.getComm())
            C.setOption(PETSc.Mat.Option.NEW_NONZERO_ALLOCATION_ERR, True)
            comp.append((C, ai2, aj[masks[-1]].astype(PETSc.IntType)))
        P = PETSc.Mat().createNest([[comp[i][0] if i == j else None for j in range(4)] for i in range(4)],
                                   isrows=isets, iscols=isets, comm=A.getComm())
        self._P_comp = (P, comp, masks)
        ctx = {"u": problem.u, "jacobian": problem.J, "preconditioner": None, "bcs": self.bcs}

        def jacobian(snes, x, J, Pm):  # noqa: ANN001
            assemble_jacobian(snes, x, J, None, **ctx)
            for i in range(4):
                _, _, av = J.getNestSubMatrix(i, i).getValuesCSR()
                C, ai2, aj2 = comp[i]
                C.zeroEntries()
                C.setValuesCSR(ai2, aj2, av[masks[i]])
                C.assemble()
            Pm.assemble()

        problem.solver.setJacobian(jacobian, A, P)

    # ---- state ------------------------------------------------------------------------------------
    def set_state(self, cs: float, ce: float = 1.0, pe: float = 0.0, ps: float | None = None) -> None:
        """Uniform equilibrium state: cs = x, ce = c/c_e0, phi_e = pe, phi_s = U(x) + pe."""
        self.u[0].x.array[:] = cs
        self.u[2].x.array[:] = ce
        self.u[3].x.array[:] = pe
        self.u[1].x.array[:] = (float(np.asarray(self.p.ocp(x=cs))) + pe) if ps is None else ps
        self._history = []
        self._last_dt = None
        self.accept_step()

    def _operating_key(self) -> tuple[float, bool, float]:
        return float(self.i_app.value), bool(self.potentiostatic), float(self.v_set.value)

    def accept_step(self) -> None:
        self.cs_n.x.array[:] = self.u[0].x.array
        self.ce_n.x.array[:] = self.u[2].x.array
        hist = getattr(self, "_history", [])
        hist.append(([f.x.array.copy() for f in self.u], getattr(self, "_last_dt", None), self._operating_key()))
        self._history = hist[-2:]

    def _predict(self, dt: float) -> None:
        """Newton's initial guess: linear extrapolation in time from the last two accepted states when
        the operating condition (current or voltage) is unchanged and the model sits at the accepted
        state. It only moves the starting point (the solution is the same), and saves about one
        Newton iteration per step: the old state with a new step leaves an O(1) residual."""
        hist = getattr(self, "_history", [])
        if not self.predictor or len(hist) < 2 or hist[1][1] is None:
            return
        (a_prev, _, key_prev), (a_n, dt_n, key) = hist
        here = all(np.array_equal(f.x.array, a) for f, a in zip(self.u, a_n))
        # both states under the present condition: after a switch the potentials jump, no trend
        if not key_prev == key == self._operating_key() or not bool(self.comm.allreduce(here, op=MPI.LAND)):
            return
        r = min(dt / dt_n, 3.0)
        for f, a, b in zip(self.u, a_n, a_prev):
            f.x.array[:] = a + r * (a - b)

    def snapshot(self) -> list[np.ndarray]:
        """Copies of the current and the accepted state (c_s, phi_s, c_e, phi_e, c_s_old, c_e_old)."""
        return [f.x.array.copy() for f in (*self.u, self.cs_n, self.ce_n)]

    def restore(self, snap: list[np.ndarray]) -> None:
        for f, a in zip((*self.u, self.cs_n, self.ce_n), snap):
            f.x.array[:] = a

    def _reset_reused_lu(self, snes: Any) -> None:
        """A reused LU may come from a state that led nowhere: refactorise on the next try. (Only an
        LU preconditioner: resetting the field split would drop its index sets; its AMG is rebuilt for
        every Jacobian anyway.)"""
        pc = snes.getKSP().getPC()
        if pc.getType() == "lu":
            pc.reset()

    def switch_to_direct(self, why: str) -> None:
        """Use MUMPS LU (reused over ``lu_lag`` Jacobians) from now on, for the galvanostatic problem and
        any potentiostatic one built later. Collective."""
        if self.linear_solver == "direct":
            return
        log.warning("iterative linear solver failed (%s): switching to MUMPS LU for the rest of the run "
                    "(%d DOFs)", why, self.dof_count())
        old = self.problem
        self.linear_solver = "direct"
        user, self.solver_options = self.solver_options, {}  # they were options of the iterative solver
        try:
            self._build_solver(self._prefix + "lu_")
        finally:
            self.solver_options = user
        try:
            old.solver.destroy()
        except Exception:  # noqa: BLE001 - best effort; the objects are also collected with the problem
            pass
        PETSc.garbage_cleanup(self.comm)
        self.solver_switches.append({"dt_s": float(self.dt.value), "reason": why})

    def solve_step(self, dt: float) -> tuple[bool, int, int]:
        """One backward-Euler step of length dt [s] from the accepted state. (converged, newton, krylov).

        With the iterative solver, a failed linear solve switches to LU (``direct_fallback_dof_limit``)
        and the step is redone from the same start; the returned counts include both tries."""
        fallback = (self.linear_solver == "iterative" and not self.potentiostatic
                    and 0 < self.dof_count() <= self.direct_fallback_dof_limit)
        start = [f.x.array.copy() for f in self.u] if fallback else None
        ok, its, kits, reason = self._solve_once(dt)
        if not ok and fallback and reason in (-3, -11):  # SNES_DIVERGED_LINEAR_SOLVE / PETSc error in KSP
            for f, a in zip(self.u, start):
                f.x.array[:] = a
            self.switch_to_direct("GMRES did not converge" if reason == -3 else "PETSc error in the linear solve")
            ok2, its2, kits2, _ = self._solve_once(dt)
            return ok2, its + its2, kits + kits2
        return ok, its, kits

    def _solve_once(self, dt: float) -> tuple[bool, int, int, int]:
        self.dt.value = dt
        self._predict(dt)
        self._last_dt = dt
        problem = self._problem_cv if self.potentiostatic else self.problem
        snes = problem.solver
        try:
            problem.solve()
        except (KeyboardInterrupt, TomocellError):
            raise  # Ctrl-C / a signal raised in a callback is not a failed step (issue 15)
        except Exception:  # noqa: BLE001 - PETSc errors (e.g. NaN in a factorisation) mean a failed step
            self._reset_reused_lu(snes)
            return False, snes.getIterationNumber(), snes.getLinearSolveIterations(), -11
        reason = snes.getConvergedReason()
        its = snes.getIterationNumber()
        kits = snes.getLinearSolveIterations()
        ok = reason > 0 and all(np.all(np.isfinite(f.x.array)) for f in self.u)
        ok = bool(self.comm.allreduce(ok, op=MPI.LAND))
        reason = int(self.comm.allreduce(reason, op=MPI.MIN))
        if not ok:
            self._reset_reused_lu(snes)
        return ok, its, kits, reason

    # ---- integrated quantities -----------------------------------------------------------------
    def _assemble(self, form_ufl: Any) -> float:
        f = fem.form(form_ufl, entity_maps=self.entity_maps if hasattr(self, "entity_maps") else None)
        return float(self.comm.allreduce(fem.assemble_scalar(f), op=MPI.SUM))

    def compile_quantities(self) -> None:
        """Forms for the scalar outputs (compiled once)."""
        cs, ps, ce, pe = self.u
        p = self.p
        ell3 = self.ell**3
        i_n = self.reaction_current(cs("+"), ps("+"), ce("-"), pe("-"))
        eps = p.sep_porosity
        forms = {
            "li_solid_mol": p.c_max * ell3 * cs * self.dx(T.ACTIVE),
            "li_electrolyte_mol": p.c_e0 * ell3 * (ce * self.dx(T.PORE) + eps * ce * self.dx(T.SEPARATOR)),
            "interface_current_A": self.ell**2 * i_n * self.dS(IFACE),
            "phi_s_cc_int": ps * self.ds(CC_SOLID),
            "cs_int": cs * self.dx(T.ACTIVE),
            "ce_min_proxy": ce * self.dx(T.PORE),
            "phi_e_li_int": pe * self.ds(LI),
        }
        if self.li_kinetics == "butler-volmer":
            forms["li_face_current_A"] = self.ell**2 * self.li_current(ce, pe) * self.ds(LI)
        self._qforms = {k: fem.form(v, entity_maps=self.entity_maps) for k, v in forms.items()}

    def quantities(self) -> dict[str, float]:
        if not hasattr(self, "_qforms"):
            self.compile_quantities()
        vals = {k: float(self.comm.allreduce(fem.assemble_scalar(f), op=MPI.SUM)) for k, f in self._qforms.items()}
        out = {
            "voltage_V": vals["phi_s_cc_int"] / self.area_cc_solid,
            "li_solid_mol": vals["li_solid_mol"],
            "li_electrolyte_mol": vals["li_electrolyte_mol"],
            "interface_current_A": vals["interface_current_A"],
            "mean_stoichiometry": vals["cs_int"] / self.vol["active"],
            "phi_e_li_V": vals["phi_e_li_int"] / self.area_li,
        }
        if "li_face_current_A" in vals:
            out["li_face_current_A"] = vals["li_face_current_A"]
        out["c_e_min"] = self.min_scaled_electrolyte_concentration() * self.p.c_e0
        return out

    def min_scaled_electrolyte_concentration(self) -> float:
        """min over all ranks of the current c_e / c_e0 (collective)."""
        loc_min = float(self.u[2].x.array.min()) if self.u[2].x.array.size else np.inf
        return float(self.comm.allreduce(loc_min, op=MPI.MIN))

    @property
    def applied_current_A(self) -> float:
        """Applied cell current [A] (> 0 on discharge) for the projected collector area."""
        return float(self.i_app.value) * self.area_cc * self.ell**2

    def one_c_current_A(self) -> float:
        """1C [A]: active-material capacity between the initial and cut-off stoichiometries in 1 h."""
        x0, x1 = self.p.theta_limits()
        return FARADAY * self.p.c_max * self.vol["active"] * self.ell**3 * (x1 - x0) / 3600.0

    def set_current_A(self, current: float) -> None:
        self.i_app.value = current / (self.area_cc * self.ell**2)

    def dof_count(self) -> int:
        return int(sum(V.dofmap.index_map.size_global * V.dofmap.index_map_bs for V in self.spaces))
