"""A static check of our package for the bug classes behind LLM-server advisories:
unpickling (pickle, marshal, shelve, dill, joblib), eval/exec, torch.load without
weights_only=True, and trust_remote_code=True."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "python" / "sglang_arctic"
BANNED_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "joblib", "cloudpickle"}
BANNED_CALLS = {"eval", "exec", "compile", "__import__"}


def findings(source: str, filename: str = "<src>") -> list[str]:
    tree = ast.parse(source, filename)
    found = []
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{where} import {a.name}" for a in node.names if a.name.split(".")[0] in BANNED_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in BANNED_MODULES:
            found.append(f"{where} from {node.module} import")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if isinstance(func, ast.Name) and name in BANNED_CALLS:
                found.append(f"{where} {name}()")
            if name == "load" and isinstance(func, ast.Attribute) and ast.unparse(func.value) == "torch":
                weights_only = [k for k in node.keywords if k.arg == "weights_only"]
                if not (weights_only and isinstance(weights_only[0].value, ast.Constant)
                        and weights_only[0].value.value is True):
                    found.append(f"{where} torch.load without weights_only=True")
            for k in node.keywords:
                if k.arg == "trust_remote_code" and not (isinstance(k.value, ast.Constant) and k.value.value is False):
                    found.append(f"{where} trust_remote_code={ast.unparse(k.value)}")
    return found


@pytest.mark.parametrize("snippet", [
    "import pickle", "from pickle import loads", "import dill.settings", "eval('1')", "exec(code)",
    "torch.load(path)", "torch.load(path, weights_only=False)", "AutoModel.from_pretrained(p, trust_remote_code=True)",
    "f(trust_remote_code=flag)",
])
def test_the_check_catches_each_pattern(snippet):
    assert findings(snippet)


@pytest.mark.parametrize("snippet", [
    "torch.load(path, weights_only=True)", "AutoTokenizer.from_pretrained(p, trust_remote_code=False)",
    "model.eval()", "re.compile('x')", "json.loads(s)",
])
def test_the_check_allows_safe_forms(snippet):
    assert findings(snippet) == []


def test_our_package_has_none_of_them():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 10
    found = [f for path in files for f in findings(path.read_text(), str(path.relative_to(PACKAGE)))]
    assert found == []
