"""gmsh volume meshes of the surface route's regions, in child processes (:func:`gmsh_tets`).

Each region (a face-connected component of one phase, bounded by its own patches) is meshed by gmsh
on its own, by HXT or Delaunay, a few at a time in separate processes (``python -m
tomocell.meshing.gmsh_pool``): HXT can kill its process (a glibc heap assertion after its boundary
recovery split a surface edge), and a child process keeps that from taking the caller down; the region
is then redone with the other algorithm. Every surface triangle is checked to come back as a tet face,
so the regions' meshes share their interface nodes and faces. Used by :mod:`tomocell.meshing.gmsh_volume`.
"""

from __future__ import annotations

import os
import time

import numpy as np

from tomocell.errors import TomocellError
from tomocell.log import get_logger
from tomocell.meshing.surface import SEPARATOR_LABEL

log = get_logger("meshing.gmsh")

#: a region whose tets are worse than this after gmsh's own optimiser gets a second, wider one
RETRY_OPTIMIZE_SICN = 0.05
#: surface label of each region's phase -> phase index (3 = separator; see gmsh_volume._assign_phases)
_REGION_PHASE = {0: 0, 1: 1, 2: 2, SEPARATOR_LABEL: 3}


class MeshingError(TomocellError):
    """gmsh failed or produced a mesh that does not pass the checks."""


def _region_table(groups: dict) -> dict[tuple[int, int], list]:
    """(phase label, region id) -> keys of the patches bounding that region (see :func:`surface_mesh`)."""
    out: dict[tuple[int, int], list] = {}
    for k in groups:
        sides = ((k[1], k[3]), (k[2], k[4])) if k[0] == "iface" else ((k[2], k[3]),)
        for reg in sides:
            out.setdefault((int(reg[0]), int(reg[1])), []).append(k)
    if not {lab for lab, _ in out} <= set(_REGION_PHASE):
        raise MeshingError(f"unexpected region labels {sorted(out)} in the surface")
    return out


def gmsh_tets(points: np.ndarray, groups: dict, *, formulation: str, h_interface_um: float, h_bulk_um: float,
               threads: int = 1, algorithm3d: int | None = None, gmsh_options: dict[str, float] | None = None):
    """Tetrahedra over the patch surface ``groups`` (nodes ``points``) by gmsh, in child processes.

    ``"regions"``: every region (face-connected component of one phase, bounded by its own patches)
    is meshed on its own, by HXT (``algorithm3d`` 10) or Delaunay (1), up to ``threads`` regions at
    a time in separate processes. gmsh keeps every surface triangle as a tet face (checked per
    region), so the regions' meshes share their interface nodes and faces: the union is conformal.
    A region whose mesher fails or kills its process (HXT can: a glibc heap assertion after its
    boundary recovery split a surface edge) is redone with the other algorithm; the count is
    reported. ``"embedded"``: the former formulation, one box volume with every interface embedded,
    Delaunay (HXT cannot mesh embedded surfaces), one process.

    Returns (points, tets, phase index per tet or None, figures); surface node ``i`` keeps index ``i``.
    """
    import json
    import subprocess
    import sys
    import tempfile

    algo = int(algorithm3d if algorithm3d is not None else (10 if formulation == "regions" else 1))
    if formulation == "embedded" and algo == 10:
        raise MeshingError("HXT (Algorithm3D 10) cannot mesh embedded surfaces; use the regions formulation")
    t0 = time.perf_counter()
    keys = list(groups)
    kidx = {k: i for i, k in enumerate(keys)}
    params = {"h_interface_um": h_interface_um, "h_bulk_um": h_bulk_um, "gmsh_options": gmsh_options or {}}
    if formulation == "regions":
        table = _region_table(groups)
        regions = sorted(table)
        jobs = [{"region": list(r), "patches": [kidx[k] for k in table[r]]} for r in regions]
        size = np.array([sum(len(groups[k]) for k in table[r]) for r in regions], dtype=np.int64)
        n_proc = max(1, min(int(threads), len(jobs)))
        per_proc_threads = max(1, int(threads) // n_proc)
    else:
        jobs = [{"region": None, "patches": list(range(len(keys)))}]
        size = np.array([1])
        n_proc, per_proc_threads = 1, int(threads)
    algos = [algo] + ([1 if algo != 1 else 10] if formulation == "regions" else [])
    tries = np.zeros(len(jobs), dtype=np.int64)  # index into algos
    done: dict[int, dict] = {}
    failures: list[str] = []
    cpu_children = 0.0
    peak_child = 0.0
    with tempfile.TemporaryDirectory(prefix="tomocell-gmsh-") as td:
        np.savez(os.path.join(td, "in.npz"), points=np.asarray(points, dtype=np.float64),
                 tris=np.concatenate([groups[k] for k in keys]).astype(np.int64),
                 counts=np.array([len(groups[k]) for k in keys], dtype=np.int64))
        with open(os.path.join(td, "keys.json"), "w") as fh:
            json.dump([list(k) for k in keys], fh)
        keep = os.environ.get("TOMOCELL_GMSH_KEEP")  # debugging: keep the gmsh input of the last call
        if keep:
            import shutil

            os.makedirs(keep, exist_ok=True)
            for name in ("in.npz", "keys.json"):
                shutil.copy(os.path.join(td, name), os.path.join(keep, name))
        for round_ in range(len(jobs) * len(algos) + 2):
            pending = [j for j in range(len(jobs)) if j not in done]
            if not pending:
                break
            # largest first, dealt round-robin to the processes (one big region dominates anyway)
            pending.sort(key=lambda j: -size[j])
            lists = [pending[w::n_proc] for w in range(n_proc)]
            procs = []
            for w, lst in enumerate(lists):
                if not lst:
                    continue
                spec = {"formulation": formulation, "params": params, "threads": per_proc_threads,
                        "jobs": [dict(jobs[j], job=j, algo=algos[tries[j]]) for j in lst], "worker": w}
                path = os.path.join(td, f"spec{round_}_{w}.json")
                with open(path, "w") as fh:
                    json.dump(spec, fh)
                procs.append((w, lst, subprocess.Popen([sys.executable, "-m", "tomocell.meshing.gmsh_pool", td, path],
                                                       stderr=subprocess.PIPE, text=True)))
            for w, lst, pr in procs:
                _, err = pr.communicate()
                for j in lst:
                    res = os.path.join(td, f"job{j}.npz")
                    if os.path.exists(res) and j not in done:
                        with np.load(res) as z:
                            done[j] = {k: z[k] for k in z.files}
                        cpu_children += float(done[j]["cpu_s"])
                        peak_child = max(peak_child, float(done[j]["peak_rss_mb"]))
                cur = os.path.join(td, f"current{w}.txt")
                crashed = None
                if pr.returncode != 0 and os.path.exists(cur):
                    crashed = int(open(cur).read().strip())
                for j in lst:
                    errf = os.path.join(td, f"job{j}.err")
                    why = None
                    if os.path.exists(errf):
                        why = open(errf).read().strip()
                        os.remove(errf)
                    elif j == crashed and j not in done:
                        tail = " | ".join(ln for ln in err.strip().splitlines()[-2:] if ln.strip())
                        why = f"gmsh process died (exit code {pr.returncode}): {tail}"
                    if why is None:
                        continue
                    failures.append(f"region {jobs[j]['region']} Algorithm3D {algos[tries[j]]}: {why}")
                    tries[j] += 1
                    if tries[j] >= len(algos):
                        raise MeshingError(f"gmsh failed ({formulation}): " + "; ".join(failures[-3:]))
                if pr.returncode != 0 and crashed is None:
                    raise MeshingError(f"gmsh process died before meshing (exit code {pr.returncode}): {err.strip()[-300:]}")
        else:
            raise MeshingError(f"gmsh ({formulation}) did not finish: " + "; ".join(failures[-3:]))
    # assemble: surface nodes keep their index, each job's new nodes are appended
    n_s = len(points)
    all_pts = [np.asarray(points, dtype=np.float64)]
    tets_l, phase_l = [], []
    nxt = n_s
    for j in range(len(jobs)):
        r = done[j]
        lut_new = np.arange(nxt, nxt + len(r["new_points"]))
        nxt += len(r["new_points"])
        all_pts.append(r["new_points"])
        t = r["tets"]  # >= 0: surface node index; < 0: -(new node local index) - 1
        tets_l.append(np.where(t >= 0, t, lut_new[np.maximum(-t - 1, 0)] if len(lut_new) else t))
        if jobs[j]["region"] is not None:
            phase_l.append(np.full(len(t), _REGION_PHASE[jobs[j]["region"][0]], dtype=np.int64))
    pts = np.concatenate(all_pts)
    tets = np.concatenate(tets_l)
    region_phase = np.concatenate(phase_l) if phase_l else None
    if np.any(tets < 0):
        raise MeshingError("gmsh returned tets with unknown nodes")
    used = np.zeros(len(pts), dtype=bool)
    used[tets.ravel()] = True
    if not used[:n_s].all():
        raise MeshingError(f"{int(np.count_nonzero(~used[:n_s]))} surface nodes are in no tet ({formulation})")
    used_algos = [algos[tries[j]] for j in range(len(jobs))]
    info = {"algorithm3d": algo, "processes": n_proc, "threads_per_process": per_proc_threads,
            "regions": len(jobs) if formulation == "regions" else 0, "tets": int(len(tets)),
            "regions_redone": len(failures), "redo_reasons": failures[:10],
            "regions_by_algorithm": {str(a): used_algos.count(a) for a in sorted(set(used_algos))},
            "time_s": time.perf_counter() - t0, "children_cpu_s": cpu_children, "children_peak_rss_mb": peak_child,
            "gmsh_3d_wall_s": float(sum(float(done[j]["gmsh_wall_s"]) for j in done)),
            "tets_per_s": float(len(tets) / max(time.perf_counter() - t0, 1e-9))}
    if failures:
        log.warning("gmsh: %d region(s) redone with the other algorithm (%s)", len(failures), failures[0])
    log.info("gmsh %s (Algorithm3D %d, %d process(es) x %d thread(s)): %d regions, %d tets in %.1f s "
             "(%.0f tets/s, children %.1f CPU s)", formulation, algo, n_proc, per_proc_threads, len(jobs), len(tets),
             info["time_s"], info["tets_per_s"], cpu_children)
    return pts, tets, region_phase, info


def _worker(workdir: str, spec_path: str) -> int:
    """Child side of :func:`gmsh_tets`: mesh each job of the spec, one result file per job.

    Before each job its number is written to ``current<worker>.txt`` so that the parent knows which
    job was running if gmsh kills the process."""
    import json
    import resource

    import gmsh

    with open(spec_path) as fh:
        spec = json.load(fh)
    with open(os.path.join(workdir, "keys.json")) as fh:
        keys = [tuple(k) for k in json.load(fh)]
    with np.load(os.path.join(workdir, "in.npz")) as inp:
        points, tris, counts = inp["points"], inp["tris"], inp["counts"]
    bounds = np.concatenate([[0], np.cumsum(counts)])
    gmsh.initialize(["-noenv"], readConfigFiles=False)
    try:
        for job in spec["jobs"]:
            j = job["job"]
            with open(os.path.join(workdir, f"current{spec['worker']}.txt"), "w") as fh:
                fh.write(str(j))
            groups = {keys[i]: tris[bounds[i]:bounds[i + 1]] for i in job["patches"]}
            # fault injection for the tests of the recovery paths: "abort:10,1" kills this process
            # (as HXT sometimes does) before meshing a job with one of those algorithms
            fault = os.environ.get("TOMOCELL_GMSH_FAULT", "")
            if fault.startswith("abort:") and str(job["algo"]) in fault[6:].split(","):
                os.abort()
            c0, ru0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
            try:
                tets, new_pts = _gmsh_job(gmsh, points, groups, formulation=spec["formulation"], algo=job["algo"],
                                          threads=spec["threads"], **spec["params"])
            except MeshingError as exc:
                with open(os.path.join(workdir, f"job{j}.err"), "w") as fh:
                    fh.write(str(exc))
                continue
            ru = resource.getrusage(resource.RUSAGE_SELF)
            np.savez(os.path.join(workdir, f"job{j}.npz"), tets=tets, new_points=new_pts,
                     cpu_s=(ru.ru_utime + ru.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
                     peak_rss_mb=ru.ru_maxrss / 1024, gmsh_wall_s=time.perf_counter() - c0)
    finally:
        gmsh.finalize()
    return 0


def _gmsh_job(gmsh, points: np.ndarray, groups: dict, *, formulation: str, algo: int, threads: int,
              h_interface_um: float, h_bulk_um: float, gmsh_options: dict[str, float]):
    """One gmsh volume mesh (one region, or the whole box with embedded interfaces) in the current
    gmsh session. Surface nodes are given to gmsh with tag = global index + 1. Returns (tets with
    surface nodes as their global index and new nodes as -(local index) - 1, new node coordinates);
    raises :class:`MeshingError` if gmsh fails or any of the given triangles is not a tet face."""
    gmsh.clear()  # one model per job; options are set again below
    gmsh.option.setNumber("General.Terminal", int(os.environ.get("TOMOCELL_GMSH_VERBOSE", "0")))
    gmsh.option.setNumber("General.NumThreads", threads)
    gmsh.model.add("tomocell")
    allt = np.concatenate(list(groups.values()))
    used, loc = np.unique(allt, return_inverse=True)
    loc = loc.reshape(-1, 3)
    surf_tags: dict[tuple, int] = {}
    start = 0
    for i, (k, tri) in enumerate(groups.items(), start=1):
        gmsh.model.addDiscreteEntity(2, i)
        if i == 1:
            gmsh.model.mesh.addNodes(2, 1, np.arange(1, len(used) + 1, dtype=np.uint64), points[used].ravel())
        gmsh.model.mesh.addElementsByType(i, 2, [], (loc[start:start + len(tri)] + 1).astype(np.uint64).ravel())
        start += len(tri)
        surf_tags[k] = i
    iface_tags = [t for k, t in surf_tags.items() if k[0] == "iface"]
    if formulation == "regions":
        # a geo volume over the discrete patches (gmsh does not mesh discrete volumes)
        gmsh.model.geo.addVolume([gmsh.model.geo.addSurfaceLoop(list(surf_tags.values()))])
        gmsh.model.geo.synchronize()
    else:
        box_tags = [t for k, t in surf_tags.items() if k[0] == "box"]
        vt = gmsh.model.geo.addVolume([gmsh.model.geo.addSurfaceLoop(box_tags)])
        gmsh.model.geo.synchronize()
        if iface_tags:
            gmsh.model.mesh.embed(2, iface_tags, 3, vt)
    if iface_tags:
        f_d = gmsh.model.mesh.field.add("Distance")
        gmsh.model.mesh.field.setNumbers(f_d, "SurfacesList", iface_tags)
        f_t = gmsh.model.mesh.field.add("Threshold")
        gmsh.model.mesh.field.setNumber(f_t, "InField", f_d)
        gmsh.model.mesh.field.setNumber(f_t, "SizeMin", h_interface_um)
        gmsh.model.mesh.field.setNumber(f_t, "SizeMax", h_bulk_um)
        gmsh.model.mesh.field.setNumber(f_t, "DistMin", 0.5 * h_interface_um)
        gmsh.model.mesh.field.setNumber(f_t, "DistMax", 2.0 * h_bulk_um)
        gmsh.model.mesh.field.setAsBackgroundMesh(f_t)
    gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)
    gmsh.option.setNumber("Mesh.MeshSizeMax", h_bulk_um)
    gmsh.option.setNumber("Mesh.Algorithm3D", algo)
    gmsh.option.setNumber("Mesh.Optimize", 1)
    gmsh.option.setNumber("Mesh.OptimizeThreshold", 0.1)
    for name, val in (gmsh_options or {}).items():
        gmsh.option.setNumber(name, val)
    try:
        gmsh.model.mesh.generate(3)
        # a wider optimisation pass only where slivers are left: with threshold 0.3 on every region
        # the 200^3 phantom's gmsh stage took 67 instead of 15-20 s (its two slivers were then gone)
        etags, _ = gmsh.model.mesh.getElementsByType(4)
        if len(etags) and float(np.min(gmsh.model.mesh.getElementQualities(etags, "minSICN"))) < RETRY_OPTIMIZE_SICN:
            gmsh.option.setNumber("Mesh.OptimizeThreshold", 0.3)
            gmsh.model.mesh.optimize("", niter=2)
    except Exception as exc:
        raise MeshingError(f"gmsh volume meshing failed: {exc}") from exc
    ntags, coords, _ = gmsh.model.mesh.getNodes()
    _, enodes = gmsh.model.mesh.getElementsByType(4)
    if len(enodes) == 0:
        raise MeshingError("gmsh produced no tetrahedra")
    ntags = np.asarray(ntags, dtype=np.int64)
    coords = np.asarray(coords).reshape(-1, 3)
    # gmsh renumbers nodes after meshing but keeps the given ones first, in order: checked here
    is_new = ntags > len(used)
    if np.count_nonzero(~is_new) != len(used) or not np.array_equal(coords[~is_new][np.argsort(ntags[~is_new])],
                                                                      points[used]):
        raise MeshingError("gmsh moved or renumbered the surface nodes")
    lut = np.zeros(ntags.max() + 1, dtype=np.int64)
    lut[ntags[~is_new]] = used[ntags[~is_new] - 1]
    lut[ntags[is_new]] = -np.arange(1, np.count_nonzero(is_new) + 1)
    tet_nodes = np.asarray(enodes, dtype=np.int64).reshape(-1, 4)
    # gmsh occasionally emits the same tet twice (seen after its optimiser); drop exact copies
    _, ui = np.unique(np.sort(tet_nodes, axis=1), axis=0, return_index=True)
    tets = lut[tet_nodes[np.sort(ui)]]
    # every given triangle must be a face of the tets (no Steiner point on the surface)
    key_t = np.sort(np.where(tets >= 0, tets, len(points) - tets), axis=1)
    faces = np.sort(key_t[:, [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]].reshape(-1, 3), axis=1)
    st = np.sort(allt, axis=1)
    fv = np.ascontiguousarray(faces).view(np.dtype((np.void, 24))).ravel()
    sv = np.ascontiguousarray(st).view(np.dtype((np.void, 24))).ravel()
    lost = ~np.isin(sv, fv)
    if np.any(lost):
        err = MeshingError(f"{int(np.count_nonzero(lost))} of {len(st)} surface triangles are not tet faces "
                           "(Steiner points on the surface)")
        err.missing_triangles = allt[lost]  # type: ignore[attr-defined]
        raise err
    return tets, coords[is_new]


if __name__ == "__main__":
    import sys

    sys.exit(_worker(sys.argv[1], sys.argv[2]))
