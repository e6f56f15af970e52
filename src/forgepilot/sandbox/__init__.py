"""Sandboxed execution of untrusted code, shared by dataset distillation and the evaluation harness."""

from forgepilot.sandbox.runner import (
    Isolation,
    Limits,
    Outcome,
    Program,
    Sandbox,
    SandboxUnavailable,
    Status,
    isolation,
)


def python_program(
    code: str, *, key: str = "", limits: Limits | None = None, stdin: str = "", files: dict[str, str] | None = None
) -> Program:
    """A program that runs ``code`` as ``main.py`` with the sandbox's Python in isolated mode."""
    return Program(
        argv=["{python}", "-I", "main.py"],
        files={**(files or {}), "main.py": code},
        stdin=stdin,
        limits=limits or Limits(),
        key=key,
        python_main="main.py",
    )


__all__ = [
    "Isolation",
    "Limits",
    "Outcome",
    "Program",
    "Sandbox",
    "SandboxUnavailable",
    "Status",
    "isolation",
    "python_program",
]
