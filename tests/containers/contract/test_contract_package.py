"""jax_llm.contract is the ground floor: the stacks, ops and local mode import it, so it never loads JAX."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

from tests.support import CONTAINER_SRC

CONTAINER = CONTAINER_SRC


def test_every_contract_module_imports_without_jax_or_numpy():
    import jax_llm.contract

    modules = [m.name for m in pkgutil.iter_modules(jax_llm.contract.__path__, "jax_llm.contract.")]
    assert {"jax_llm.contract.paths", "jax_llm.contract.hyperparameters", "jax_llm.contract.metrics"} <= set(
        modules
    )
    probe = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print(sorted({n.split('.')[0] for n in sys.modules} & {'jax', 'flax', 'optax', 'numpy', 'orbax'}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(CONTAINER), "PATH": "/usr/bin:/bin"},
    ).stdout.strip()
    assert loaded == "[]"
