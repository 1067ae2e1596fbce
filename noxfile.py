"""Test sessions for the icrl workspace: `uv run nox` runs the default ones.

Each package's tests run in an environment holding only that package and its declared
dependencies (``uv sync --package``), so an import of an undeclared sibling fails there.
"""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "uv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["lint", "architecture", "tests", "reliability", "smoke"]

# package directory -> distribution name
PACKAGES = {
    "packages/metaenvs": "icrl-metaenvs",
    "packages/histories": "icrl-histories",
    "packages/seqmodels": "icrl-seqmodels",
    "packages/ad-core": "icrl-ad-core",
    "packages/baselines": "icrl-baselines",
    "apps": "icrl-apps",
}

# Without bytecode caches `import tianshou` takes 13 s instead of 5 s; Tianshou 2.0.1 draws a
# progress bar even when told not to.
ENV = {"PYTHONDONTWRITEBYTECODE": None, "TQDM_DISABLE": "1", "MUJOCO_GL": "egl"}


def _sync(session: nox.Session, *args: str) -> None:
    """Install exactly what the lock says for `args` into this session's virtualenv."""
    session.run_install(
        "uv",
        "sync",
        "--locked",
        *args,
        env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location},
    )


@nox.session
@nox.parametrize("package", list(PACKAGES))
def tests(session: nox.Session, package: str) -> None:
    """Run one package's CPU tests in an environment with only its declared dependencies."""
    _sync(session, "--package", PACKAGES[package], "--group", "test")
    session.run("pytest", f"{package}/tests", "-m", "not gpu", *session.posargs, env=ENV)


@nox.session
def architecture(session: nox.Session) -> None:
    """Check the dependency direction and that every import is declared by its package."""
    _sync(session, "--all-packages", "--group", "dev")
    session.run("pytest", "tests/test_architecture.py", *session.posargs, env=ENV)


@nox.session
def reliability(session: nox.Session) -> None:
    """The bad-input catalogue (docs/reliability.md) and the kill -9 and resume tests."""
    _sync(session, "--all-packages", "--group", "dev")
    # -rP: the output of passed tests, i.e. the kill tests' report of how many kills landed.
    # -n 2: two workers share the catalogue cases and the kill tests
    # (both mostly wait on subprocesses, so one worker left a core idle).
    session.run(
        "pytest", "tests/reliability", "--durations=10", "-rP", "-n", "2",
        *session.posargs, env=ENV,
    )  # fmt: skip


@nox.session
def smoke(session: nox.Session) -> None:
    """Run `apps/reproduce.py` on its tiny preset end to end, rerun it, check report and figures."""
    _sync(session, "--all-packages", "--group", "dev")
    session.run("python", "apps/reproduce.py", "--help", env=ENV, silent=True)
    session.run("pytest", "apps/smoke", *session.posargs, env=ENV)


@nox.session
def gpu(session: nox.Session) -> None:
    """Run the GPU-marked tests (kernel agreement); needs CUDA and the mamba extra."""
    _sync(session, "--all-packages", "--group", "dev", "--extra", "mamba")
    session.run("pytest", *PACKAGES, "-m", "gpu", *session.posargs, env=ENV)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check over the whole workspace."""
    _sync(session, "--only-group", "dev")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


if os.environ.get("CI"):
    nox.options.error_on_missing_interpreters = True
