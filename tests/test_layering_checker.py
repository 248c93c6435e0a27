"""The layering check itself finds each kind of problem in a small tree built for it (so a clean
``test_layering`` run means the code is clean, not that the walk saw nothing)."""

from __future__ import annotations

from pathlib import Path

from tests import test_layering as lay


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for pkg in {p.parent for p in root.rglob("*.py")}:
        (pkg / "__init__.py").touch()
    return root


def test_each_rule_is_caught(tmp_path):
    root = _tree(
        tmp_path,
        {
            "components/io/video.py": "from components.dit.mosa import X\n",  # io below dit: upward
            "components/dit/mosa.py": "from components.config import load_section\nX = 1\n",
            "components/dit/a.py": "from components.dit.b import B\nA = 1\n",
            "components/dit/b.py": "from components.dit.a import A\nB = 1\n",  # a <-> b: a circle
            "components/dit/config.py": "import torch\n",  # a config leaf importing torch
            "components/data/sources.py": "def f():\n    from components.io.video import read\n",
            "components/data/ok.py": "def f():\n    # lazy: heavy\n    from components.io.video import r\n",
            "flows/train.py": "import mlflow\n",
            "flows/stage.py": "import mlflow\n",  # the one flow allowed to
        },
    )
    found = lay.violations(root)
    assert any("components/io/video.py:1 imports components.dit.mosa" in v for v in found["upward"])
    assert any("components/dit/mosa.py" in v for v in found["config"])
    assert any("components/dit/config.py:1 imports torch" in v for v in found["leaf"])
    assert [v.split(":")[0] for v in found["mlflow"]] == ["flows/train.py"]
    assert [v.split(":")[0] for v in found["lazy"]] == ["components/data/sources.py"]
    assert found["cycle"] == ["components.dit.a -> components.dit.b"]


def test_a_clean_tree_has_no_problem(tmp_path):
    root = _tree(
        tmp_path,
        {
            "components/io/video.py": "X = 1\n",
            "components/dit/mosa.py": "from components.io.video import X\nimport components.dit.config\n",
            "components/dit/config.py": "from pydantic import BaseModel\nfrom components.params import S\n",
            "components/params.py": "from pydantic import BaseModel\n",
            "flows/train.py": "from components.dit.mosa import X\n",
        },
    )
    assert all(not problems for problems in lay.violations(root).values())
