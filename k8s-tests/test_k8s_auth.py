"""Render tests of the bearer tokens (values ``auth``): off by default; on, the
gateway, every model server and the helm test pod read their tokens from a Secret
the chart creates (tokens as values) or one that exists (name and key), and no
token appears in any other object."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from chart_render import FULLNAME, KIND_VALUES, Manifests, RenderFn

GW_TOKEN = "gw-render-token"
MS_TOKEN = "ms-render-token"
ON = {
    "auth": {
        "gateway": {"enabled": True, "token": GW_TOKEN},
        "members": {"enabled": True, "token": MS_TOKEN},
    },
    "canary": {"enabled": True},
}


def _env(pod: dict[str, Any], container: str) -> dict[str, Any]:
    (c,) = [c for c in pod["spec"]["containers"] if c["name"] == container]
    return {e["name"]: e for e in c.get("env", [])}


def _pod_templates(manifests: Manifests) -> dict[str, dict[str, Any]]:
    pods = {d["metadata"]["name"]: d["spec"]["template"] for d in manifests.of_kind("Deployment")}
    pods.update({p["metadata"]["name"]: p for p in manifests.of_kind("Pod")})
    return pods


def _secret_ref(entry: dict[str, Any]) -> tuple[str, str]:
    ref = entry["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def test_auth_is_off_by_default(render: RenderFn) -> None:
    manifests = render(KIND_VALUES)
    assert not [s for s in manifests.of_kind("Secret") if s["metadata"]["name"].endswith("-auth")]
    for name, pod in _pod_templates(manifests).items():
        for c in pod["spec"]["containers"]:
            names = {e["name"] for e in c.get("env", [])}
            assert not names & {"WMA_GATEWAY_TOKEN", "WMA_MS_TOKEN"}, name


def test_tokens_as_values_go_into_the_charts_secret_and_every_pod_reads_its_own(
    render: RenderFn,
) -> None:
    manifests = render(KIND_VALUES, overrides=ON)
    secret = manifests.get("Secret", f"{FULLNAME}-auth")
    assert base64.b64decode(secret["data"]["gateway-token"]).decode() == GW_TOKEN
    assert base64.b64decode(secret["data"]["members-token"]).decode() == MS_TOKEN
    pods = _pod_templates(manifests)
    gateways = [p for n, p in pods.items() if "-gateway" in n]
    assert len(gateways) == 2  # stable and canary
    for pod in gateways:
        env = _env(pod, "gateway")
        assert _secret_ref(env["WMA_GATEWAY_TOKEN"]) == (f"{FULLNAME}-auth", "gateway-token")
        assert _secret_ref(env["WMA_MS_TOKEN"]) == (f"{FULLNAME}-auth", "members-token")
    members = manifests.component("Deployment", "model-server")
    assert len(members) == 4
    for deployment in members:
        env = _env(deployment["spec"]["template"], "model-server")
        assert _secret_ref(env["WMA_MS_TOKEN"]) == (f"{FULLNAME}-auth", "members-token")
        assert "WMA_GATEWAY_TOKEN" not in env
    test_pod = pods[f"{FULLNAME}-test-analyze"]
    env = _env(test_pod, "analyze")
    assert _secret_ref(env["WMA_GATEWAY_TOKEN"]) == (f"{FULLNAME}-auth", "gateway-token")
    assert "WMA_GATEWAY_TOKEN" in test_pod["spec"]["containers"][0]["args"][0]  # it sends it
    # the tokens are in the Secret (base64) and nowhere else, in no form
    for name, text in manifests.templates.items():
        if not name.endswith("auth-secret.yaml"):
            assert GW_TOKEN not in text and MS_TOKEN not in text, name
            for token in (GW_TOKEN, MS_TOKEN):
                assert base64.b64encode(token.encode()).decode() not in text, name


def test_an_existing_secret_is_referenced_by_name_and_key_and_none_is_created(
    render: RenderFn,
) -> None:
    overrides = {
        "auth": {
            "gateway": {"enabled": True, "existingSecret": "door", "key": "gw"},
            "members": {"enabled": True, "existingSecret": "members-door", "key": "ms"},
        }
    }
    manifests = render(KIND_VALUES, overrides=overrides)
    assert not [s for s in manifests.of_kind("Secret") if s["metadata"]["name"].endswith("-auth")]
    gateway = manifests.component("Deployment", "gateway")[0]["spec"]["template"]
    env = _env(gateway, "gateway")
    assert _secret_ref(env["WMA_GATEWAY_TOKEN"]) == ("door", "gw")
    assert _secret_ref(env["WMA_MS_TOKEN"]) == ("members-door", "ms")
    member = manifests.component("Deployment", "model-server")[0]["spec"]["template"]
    assert _secret_ref(_env(member, "model-server")["WMA_MS_TOKEN"]) == ("members-door", "ms")


def test_only_the_members_token_leaves_the_gateway_door_open(render: RenderFn) -> None:
    overrides = {"auth": {"members": {"enabled": True, "token": MS_TOKEN}}}
    manifests = render(KIND_VALUES, overrides=overrides)
    secret = manifests.get("Secret", f"{FULLNAME}-auth")
    assert set(secret["data"]) == {"members-token"}
    env = _env(manifests.component("Deployment", "gateway")[0]["spec"]["template"], "gateway")
    assert "WMA_GATEWAY_TOKEN" not in env and "WMA_MS_TOKEN" in env


def test_auth_on_without_a_token_is_refused_naming_the_value(render: RenderFn) -> None:
    with pytest.raises(Exception, match=r"auth\.gateway\.enabled needs auth\.gateway\.token"):
        render(KIND_VALUES, overrides={"auth": {"gateway": {"enabled": True}}})


@pytest.mark.parametrize(
    "bad",
    [
        {"gateway": {"enabled": "yes"}},
        {"gateway": {"token": "has spaces"}},
        {"members": {"tokenFile": "/x"}},
        {"everyone": {}},
    ],
)
def test_the_schema_refuses_wrong_auth_values(render: RenderFn, bad: dict[str, Any]) -> None:
    with pytest.raises(Exception, match="auth"):
        render(KIND_VALUES, overrides={"auth": bad})


def test_the_notes_say_to_send_the_token_only_when_the_door_has_one(render: RenderFn) -> None:
    notes = "Authorization: Bearer $WMA_GATEWAY_TOKEN"
    on = render(KIND_VALUES, overrides=ON).templates
    off = render(KIND_VALUES).templates
    assert any(notes in t for n, t in on.items() if n.endswith("NOTES.txt"))
    assert not any(notes in t for n, t in off.items() if n.endswith("NOTES.txt"))


def test_with_auth_on_every_object_validates_against_the_kubernetes_schema(
    render: RenderFn,
) -> None:
    import kubernetes_validate

    manifests = render(KIND_VALUES, overrides=ON)
    for obj in manifests.objects:
        if obj["kind"] in {"HTTPRoute", "ServiceMonitor"}:  # custom resources
            continue
        kubernetes_validate.validate(obj, "1.31.0", strict=True)
