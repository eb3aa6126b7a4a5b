"""tomocell.physics: particle-resolved half-cell discharge model in DOLFINx (issue 6).

Modules (import them directly; nothing heavy is imported here so the package loads without DOLFINx):

* :mod:`~tomocell.physics.parameters` cited parameter sets (NMC111 default, Xu2019), BPX reader
* :mod:`~tomocell.physics.topology` which cells carry which field, interface and boundary data, inert material
* :mod:`~tomocell.physics.model` weak forms on one parent mesh with per-field submeshes
* :mod:`~tomocell.physics.newton` PETSc Newton-Krylov set-up (LU or field split + GAMG) and the step solve
* :mod:`~tomocell.physics.solver` adaptive backward Euler, retries, event location
* :mod:`~tomocell.physics.discharge` the operation: ``simulate_discharge(inp, c_rate, ...)``
* :mod:`~tomocell.physics.outputs` run-directory layout (read by the analysis stage)
* :mod:`~tomocell.physics.checkpoint` checkpoints and ``--resume``
* :mod:`~tomocell.physics.cli` ``tomocell simulate`` and ``simulate_file(mesh, c_rate, out, ...)``
* :mod:`~tomocell.physics.synthetic` small in-memory test cells
* :mod:`~tomocell.physics.protocols` PyBaMM-style experiments (parse, run), GITT/HPPC analysis
"""
