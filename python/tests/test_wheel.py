"""The built wheel carries the shipped models: installed outside the checkout, with no
$SCLLM_MODEL, `scllm.tl.embed` and `finetune` default to the models inside the package.
.ci/python.sh builds the wheel and sets SCLLM_WHEEL; without it this test is skipped."""

import os
import subprocess
import sys

import pytest

from conftest import fixture

CODE = """
import sys
import anndata as ad
import scllm
from scllm.tl import default_model
site = sys.argv[1]
for verb, name in (("embed", "cellplm-small"), ("finetune", "scllm-small")):
    m = default_model(verb)
    assert m is not None and str(m).startswith(site) and m.name == name, (verb, m)
a = ad.read_h5ad(sys.argv[2])
s = scllm.tl.embed(a)
assert a.obsm["X_cellplm"].shape == (a.n_obs, 64), a.obsm["X_cellplm"].shape
print(s["model"])
"""


def test_the_wheel_carries_the_shipped_models(tmp_path):
    wheel = os.environ.get("SCLLM_WHEEL")
    if not wheel:
        pytest.skip("SCLLM_WHEEL is not set (.ci/python.sh builds the wheel and sets it)")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), wheel],
                   check=True)
    env = {k: v for k, v in os.environ.items() if k != "SCLLM_MODEL"}
    env["PYTHONPATH"] = str(site)
    r = subprocess.run([sys.executable, "-c", CODE, str(site), str(fixture("cellplm/cells.h5ad"))],
                       cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith(str(site)), r.stdout
