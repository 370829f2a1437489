"""Plugins: a package installed with pip adds an image method, a loss term, a student method and a
protocol through the `ladd.plugins` entry-point group, and the CLI runs them; a broken plugin or
one taking a built-in name is one line naming it."""

import json
import os
import subprocess
import sys
import textwrap

PLUGIN = '''
from pathlib import Path

import torch
import torch.nn.functional as F


def tiny_images(req):
    """The first IPC training images of every class."""
    labels = req.dataset.train.labels
    picks = [(labels == c).nonzero().flatten()[: req.ipc] for c in range(req.dataset.num_classes)]
    return req.dataset.train.subset(torch.cat(picks))


class TinyTerm:
    def __call__(self, model, batch):
        return F.cross_entropy(model(batch.images), batch.labels), batch.images.shape[0]


def register(ladd):
    ladd.images.register("tiny")(tiny_images)
    ladd.terms.register("tiny-ce")(lambda k, reduction, soft_loss: TinyTerm())
    ladd.methods.register("tiny")(("tiny-ce",))
    ladd.protocols.register("tiny-budget")(Path(__file__).parent / "tiny_budget.toml")
'''

PROTOCOL = """
name = "tiny-budget"
budget = "a plugin's protocol"
source = "tests/test_plugins.py"
epochs = 1
lr = 0.01
"""


def install(tmp_path, name, module, files=()):
    """pip-install a package (`module` as its __init__, plus data `files`) declaring `register` as its
    `ladd.plugins` entry point (offline: setuptools from the venv, no build isolation) into a folder
    of its own; the environment that sees it."""
    src = tmp_path / f"{name}-src"
    (src / name).mkdir(parents=True)
    (src / "pyproject.toml").write_text(
        textwrap.dedent(f'''
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{name}"
        version = "0.1"

        [tool.setuptools]
        packages = ["{name}"]
        package-data = {{{name} = ["*.toml"]}}

        [project.entry-points."ladd.plugins"]
        {name} = "{name}:register"
    ''')
    )
    (src / name / "__init__.py").write_text(module)
    for fname, text in files:
        (src / name / fname).write_text(text)
    site = tmp_path / f"{name}-site"
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", "--target", site, src]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert res.returncode == 0, res.stderr
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def ladd(*args, env):
    return subprocess.run([sys.executable, "-m", "ladd", *map(str, args)], capture_output=True, text=True, env=env)


def test_plugin_image_method_term_and_protocol_through_the_cli(tmp_path):
    env = install(tmp_path, "ladd_tiny", PLUGIN, [("tiny_budget.toml", PROTOCOL)])
    out = tmp_path / "A"
    res = ladd("distill", "--dataset", "digits", "--ipc", "1", "--images", "tiny", "--out", out, env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "manifest.json").read_text())["images"]["method"] == "tiny"
    check = (
        "from ladd import api; from ladd.eval.protocols import load_protocol; from ladd.train.terms import method_terms;"
        "print(list(method_terms('tiny')), load_protocol('tiny-budget').epochs)"
    )
    res = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["['tiny-ce']", "1"]


def test_broken_or_clashing_plugin_is_one_line_naming_it(tmp_path):
    env = install(tmp_path, "ladd_broken", "raise RuntimeError('boom')\n")
    res = ladd("distill", "--dataset", "digits", "--ipc", "1", "--images", "random", "--out", tmp_path / "B", env=env)
    assert res.returncode == 2
    assert res.stderr.strip() == "error: plugin 'ladd_broken' (ladd_broken:register) failed: RuntimeError: boom"

    env = install(tmp_path, "ladd_clash", "def register(ladd):\n    ladd.images.register('random-real')(print)\n")
    res = ladd("distill", "--dataset", "digits", "--ipc", "1", "--images", "random", "--out", tmp_path / "C", env=env)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "plugin 'ladd_clash'" in res.stderr and "'random-real' is already registered (as 'random')" in res.stderr
    assert not (tmp_path / "C").exists()
