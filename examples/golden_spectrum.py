"""Print the NeuroMFA spectrum of the golden Pythia-70m-shaped network (the engine's smoke run).

Run: ``python examples/golden_spectrum.py``. Needs only the repository (the golden file is in
``tests/data/golden``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from neuromfa_callback import multifractal_spectrum

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "data" / "golden"


def main() -> None:
    arrays = np.load(GOLDEN / "pythia70m_shape_init.npz")
    ref = json.loads((GOLDEN / "pythia70m_shape_init.json").read_text())
    s = multifractal_spectrum(arrays["indptr"], arrays["distances"])
    print(f"Pythia-70m-shaped network at initialisation: {s.n_nodes} kept nodes, {s.n_edges} kept edges")
    print(f"alpha0 = {s.alpha0:.6f}   width = {s.width:.6f}   well-formed: {s.is_well_formed}")
    print(f"max |tau - reference| = {np.abs(s.tau - ref['tau']).max():.1e}")
    print("   q      tau    alpha  f(alpha)")
    for j in range(0, s.q.size - 1, 6):
        print(f"{s.q[j]:5.1f} {s.tau[j]:8.4f} {s.alpha[j]:8.4f} {s.f_alpha[j]:9.4f}")


if __name__ == "__main__":
    main()
