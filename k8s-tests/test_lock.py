"""The locks in requirements/: complete for pyproject.toml, in step with each other,
hashed, and what this environment (``make install``) really has installed."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib

import pytest
from chart_render import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

LOCKS = REPO / "requirements"
PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+)")


def read_lock(name: str) -> dict[str, Version]:
    """{canonical name: version} of a lock, checking every entry carries a sha256 hash."""
    pins: dict[str, Version] = {}
    entries = re.split(r"\n(?=\S)", (LOCKS / f"{name}.lock").read_text())
    for entry in entries:
        match = PIN.match(entry)
        if match is None:
            assert entry.startswith("#") or not entry.strip(), entry[:80]
            continue
        assert "--hash=sha256:" in entry, f"{name}.lock: {match.group(1)} has no hash"
        pins[canonicalize_name(match.group(1))] = Version(match.group(2))
    assert pins, f"{name}.lock pins nothing"
    return pins


def project_requirements(*extras: str) -> list[Requirement]:
    """The base requirements and those of ``extras``; an extra that names the project
    itself (``wma-ensemble[calibrate]``) stands for those extras' requirements."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for line in project["optional-dependencies"][extra]:
            req = Requirement(line)
            if canonicalize_name(req.name) == canonicalize_name(project["name"]):
                pending += sorted(req.extras)
            else:
                reqs.append(req)
    return reqs


@pytest.mark.parametrize(
    ("lock", "extras"),
    [
        ("dev", ("dev", "calibrate", "model-server", "local", "torch")),
        ("model-server", ("model-server", "torch")),
        ("gateway", ()),
    ],
)
def test_each_lock_pins_every_requirement_it_serves_within_its_range(
    lock: str, extras: tuple[str, ...]
) -> None:
    pins = read_lock(lock)
    for req in project_requirements(*extras):
        name = canonicalize_name(req.name)
        assert name in pins, f"{lock}.lock does not pin {req.name}: run make lock"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{lock}.lock pins {req.name}=={pins[name]}, outside {req}: run make lock"
        )


def test_image_locks_pin_the_same_versions_as_the_dev_lock() -> None:
    dev = read_lock("dev")
    for lock in ("model-server", "gateway"):
        for name, version in read_lock(lock).items():
            assert dev.get(name) == version, f"{lock}.lock {name}=={version}, dev {dev.get(name)}"


def test_torch_is_the_cpu_build_and_stays_out_of_the_gateway_image() -> None:
    assert read_lock("dev")["torch"].local == "cpu"
    assert read_lock("model-server")["torch"] == read_lock("dev")["torch"]
    assert "torch" not in read_lock("gateway")


def test_the_gateway_image_carries_only_serving_dependencies() -> None:
    tools = {"scikit-learn", "pandas", "pyarrow", "matplotlib", "opencv-python-headless"}
    assert not (tools | {"torch", "transformers"}) & set(read_lock("gateway"))
    base = project_requirements()
    assert not {canonicalize_name(r.name) for r in base} & (tools | {"torch", "transformers"})


def test_this_environment_has_exactly_the_locked_versions_installed() -> None:
    wrong = []
    for name, version in read_lock("dev").items():
        try:
            installed = Version(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            wrong.append(f"{name} missing (locked {version})")
            continue
        if installed != version:
            wrong.append(f"{name} {installed} (locked {version})")
    assert not wrong, "not the locked environment (make install): " + ", ".join(wrong)
