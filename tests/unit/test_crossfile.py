"""Cross-file completion holes (CrossCodeEval-style) from any repository, and their suite with per-kind slices."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from forgepilot.datagen.pipeline import BuildOptions, open_builder
from forgepilot.evals import load_suite
from tests.unit.test_datagen import REPOS, read_instances, settings_for

KINDS = ("crossfile_line", "crossfile_api")

ROUTER = """\
var Route = require('./route');
var { compile, normalize: norm } = require('./utils');
var debug = require('debug')('router');

function Router() {}

Router.prototype.route = function route(path) {
  // Route(path) makes the route; compile(path) its matcher.
  var label = 'Route(' + path + ')';
  var route = new Route(norm(path));
  this.stack.push(compile(path, route.dispatch.bind(route)));
  debug('new route %s', path);
  return route;
};

module.exports = Router;
"""
ROUTE = "function Route(path) {\n  this.path = path;\n}\n\nmodule.exports = Route;\n"
UTILS = """\
exports.compile = function compile(path, fn) {
  return [path, fn];
};

function normalize(p) {
  return p;
}
exports.normalize = normalize;
"""


def build(tmp: Path, root: Path) -> list[dict[str, object]]:
    report = open_builder(settings_for(tmp, per_file=20)).build(
        [root], BuildOptions(out=tmp / "out", kinds=KINDS, resume=False)
    )
    return sorted(read_instances(report.out), key=lambda r: (str(r["kind"]), int(r["start_line"])))  # type: ignore[call-overload]


def test_python_holes_start_at_names_imported_from_the_same_package(tmp_path: Path) -> None:
    root = shutil.copytree(REPOS / "python", tmp_path / "python")
    rows = build(tmp_path, root)
    cart = [(r["kind"], r["completion"]) for r in rows if r["path"] == "shop/cart.py"]
    assert cart == [
        ("crossfile_api", "apply_discount(price, discount)"),
        ("crossfile_api", "total(prices)"),
        ("crossfile_line", "apply_discount(price, discount) for _, price in self.items]"),
        ("crossfile_line", "total(prices)"),
    ]
    first = next(r for r in rows if r["path"] == "shop/cart.py")
    meta = first["meta"] if isinstance(first["meta"], dict) else json.loads(str(first["meta"]))
    assert meta["defined_in"] == "shop/pricing.py" and meta["identifier"] == "apply_discount"
    # The hole is rendered exactly as serving renders a request at that cursor.
    assert str(first["prefix"]).endswith("prices = [") and first["format"] in ("repo-level", "plain")


def test_javascript_holes_follow_require_and_import_bindings_only(tmp_path: Path) -> None:
    root = tmp_path / "router"
    (root / "lib").mkdir(parents=True)
    (root / "lib" / "index.js").write_text(ROUTER)
    (root / "lib" / "route.js").write_text(ROUTE)
    (root / "lib" / "utils.js").write_text(UTILS)
    rows = build(tmp_path, root)
    holes = {(r["kind"], r["completion"]) for r in rows if r["path"] == "lib/index.js"}
    assert ("crossfile_line", "Route(norm(path));") in holes
    assert ("crossfile_api", "compile(path, route.dispatch.bind(route))") in holes
    # ``debug`` is a package, not a file of the repository; ``route`` here is a local variable.
    assert not any(c.startswith(("debug", "route.")) for _, c in holes)
    # Import lines are never holes, and neither are comments or strings that name an imported function.
    assert not any("require(" in str(c) for _, c in holes)
    assert not any(str(c).startswith(("Route(path) makes", "Route(' +")) for _, c in holes)


def test_cross_file_holes_are_a_suite_sliced_by_kind(tmp_path: Path) -> None:
    root = shutil.copytree(REPOS / "python", tmp_path / "python")
    build(tmp_path, root)
    suite = load_suite(tmp_path / "out")
    assert {c.slices["task"] for c in suite.cases} == set(KINDS)
    assert all(c.input["mode"] == "inline" for c in suite.cases)


def test_docstrings_that_name_an_imported_function_are_not_holes(tmp_path: Path) -> None:
    root = tmp_path / "shop"
    (root / "shop").mkdir(parents=True)
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "pricing.py").write_text("def total(items):\n    return sum(items)\n")
    (root / "shop" / "cart.py").write_text(
        "from shop.pricing import total\n\n\ndef checkout(items):\n"
        '    """Add up the items.\n\n    total(items) is what the customer pays.\n    """\n'
        "    return total(items)\n"
    )
    rows = build(tmp_path, root)
    assert {(r["kind"], r["completion"], r["start_line"]) for r in rows} == {
        ("crossfile_line", "total(items)", 9),
        ("crossfile_api", "total(items)", 9),
    }
