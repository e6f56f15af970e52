"""Templates that do not ship with the package are someone else's code: they render sandboxed, bounded, and a
hostile one is a clear 4xx that names it, with nothing run. Clients name indexed repositories only."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgepilot.backends.fake import FakeBackend
from forgepilot.index import Indexer
from forgepilot.prompts import PromptRegistry, UnsafeTemplate, builtin_registry
from forgepilot.prompts import registry as registry_mod
from tests.unit.test_gateway import error_of, make_client


def payloads(marker: Path) -> dict[str, str]:
    """Ways out of a plain Jinja2 environment (each ran a shell command in the gateway before the sandbox)."""
    cmd = f"touch {marker}"
    return {
        "globals": "{{ cycler.__init__.__globals__.os.popen('" + cmd + "').read() }}",
        "mro": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "joiner": "{{ joiner.__init__.__globals__['os'].system('" + cmd + "') }}",
        "namespace": "{{ namespace.__init__.__globals__.os.system('" + cmd + "') }}",
        "lipsum": "{{ lipsum.__globals__['os'].popen('" + cmd + "').read() }}",
    }


@pytest.mark.parametrize("name", list(payloads(Path("/x"))))
async def test_a_hostile_repository_action_is_a_4xx_naming_it_and_runs_nothing(
    name: str, isolated_state: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    repo = tmp_path / "proj"
    (repo / ".forgepilot" / "actions").mkdir(parents=True)
    (repo / "app.py").write_text("print('hi')\n")
    (repo / ".forgepilot" / "actions" / f"{name}.j2").write_text(payloads(marker)[name] + "\n{{ code }}\n")
    backend = FakeBackend("fake:test", replies=["ok"])
    client, assistant, store = make_client(isolated_state, backend)
    assert assistant.workspace is not None
    Indexer(assistant.workspace, embeddings=False).index(repo)
    try:
        r = await client.post(f"/v1/assist/actions/{name}", json={"code": "x = 1"})
        err = error_of(r)
        assert r.status_code == 400 and err["code"] == "unsafe_template", r.text
        assert f"actions/{name}" in str(err["message"])
        assert not marker.exists() and backend.prompts == []
    finally:
        await client.aclose()
        await assistant.aclose()
        store.close()


async def test_a_client_cannot_name_a_directory_as_its_repository(isolated_state: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    elsewhere = tmp_path / "not-indexed"
    (elsewhere / ".forgepilot" / "actions").mkdir(parents=True)
    (elsewhere / ".forgepilot" / "actions" / "run.j2").write_text(payloads(marker)["globals"])
    backend = FakeBackend("fake:test", replies=["ok"])
    client, assistant, store = make_client(isolated_state, backend, index=True)
    try:
        r = await client.post("/v1/assist/actions/run", json={"code": "x", "repository": str(elsewhere)})
        assert r.status_code == 404 and error_of(r)["code"] == "repository_not_found"
        listed = await client.get("/v1/assist/actions", params={"repository": str(elsewhere)})
        assert listed.status_code == 404
        assert not marker.exists()
        # An indexed repository, by name, is fine.
        assert (await client.get("/v1/assist/actions", params={"repository": "python"})).status_code == 200
    finally:
        await client.aclose()
        await assistant.aclose()
        store.close()


def write(tmp_path: Path, name: str, text: str) -> PromptRegistry:
    d = tmp_path / "actions"
    d.mkdir(exist_ok=True)
    (d / f"{name}.j2").write_text(text, encoding="utf-8")
    return PromptRegistry([d], namespace="actions")


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{{ 'x' * 10**9 }}", "repetition"),
        ("{{ 2 ** 100000 }}", "exponent"),
        ("{% set items = [] %}{{ items.append(1) }}", "append"),
        ("{{ code.__class__ }}", "__class__"),
    ],
)
def test_untrusted_templates_cannot_allocate_without_bound_or_mutate(tmp_path: Path, source: str, problem: str) -> None:
    registry = write(tmp_path, "bad", source)
    with pytest.raises(UnsafeTemplate) as info:
        registry.render("actions/bad", {"code": "x"})
    assert "actions/bad" in info.value.one_line() and problem in info.value.one_line()


def test_an_untrusted_template_that_loops_for_ever_is_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_mod, "UNTRUSTED_RENDER_S", 0.3)
    registry = write(
        tmp_path, "spin", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    )
    with pytest.raises(UnsafeTemplate, match="ran past 0.3 s"):
        registry.render("actions/spin", {})


def test_prompt_suite_variants_are_untrusted_and_built_ins_are_not(tmp_path: Path) -> None:
    variant = tmp_path / "v1.j2"
    variant.write_text("{{ cycler.__init__.__globals__ }}")
    registry = PromptRegistry([])
    registry.add("suite/v1", variant)
    with pytest.raises(UnsafeTemplate):
        registry.render("suite/v1", {})
    builtin = builtin_registry()
    assert all(builtin.get(n).trusted for n in builtin.names())
    rendered = write(tmp_path, "ok", "Explain {{ code | numbered }} in {{ language | upper }}").render(
        "actions/ok", {"code": "a\nb", "language": "go"}
    )
    assert rendered.user == "Explain     1 | a\n    2 | b in GO"
