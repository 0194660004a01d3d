"""The Dockerfiles keep their invariants: multi-stage, non-root, HEALTHCHECK, no build tools.

No Docker engine runs in CI's unit stage, so the files are parsed: the final
image is the last stage plus every stage it is built FROM (resolved with the
build arguments), and only those instructions count.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|build-essential|clang|make|cmake|cargo|rustc|libc6-dev)\b")
CHART_VALUES = REPO / "charts" / "wma-ensemble" / "values.yaml"

# (Dockerfile, build args) — every variant the docs tell users to build.
VARIANTS = [
    ("model-server.Dockerfile", {}),
    ("model-server.Dockerfile", {"BASE": "cuda"}),
    ("gateway.Dockerfile", {}),
]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


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


@pytest.mark.parametrize("dockerfile", ["model-server.Dockerfile", "gateway.Dockerfile"])
def test_entrypoint_is_the_wma_command_the_chart_runs(dockerfile: str) -> None:
    _, chain = final_image(DOCKER / dockerfile, {})
    flat = [(kw, rest) for stage in chain for kw, rest in stage.instructions]
    entrypoint = next(rest for kw, rest in flat if kw == "ENTRYPOINT")
    assert shlex.split(entrypoint.strip("[]").replace(",", " ")) == ["wma"]
    env = " ".join(rest for kw, rest in flat if kw == "ENV")
    assert "PATH=/opt/venv/bin:$PATH" in env


def test_cuda_variant_installs_cuda_wheels_and_cpu_variant_does_not() -> None:
    for base, expected in (("cpu", "/whl/cpu"), ("cuda", "/whl/${CUDA_WHEELS}")):
        stages, _ = final_image(DOCKER / "model-server.Dockerfile", {"BASE": base})
        build = next(s for s in stages if s.name == "build")
        torch_stage = next(s for s in stages if s.name == build.base)
        runs = " ".join(rest for kw, rest in torch_stage.instructions if kw == "RUN")
        assert expected in runs, (base, runs)
