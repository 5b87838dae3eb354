"""The optional RBAC for the pipeline's rollout step (templates/rollout-rbac.yaml, `rollout.rbac.create`)."""

from __future__ import annotations

import helm_python
import kubernetes_validate
import pytest

from tests.chart.manifests import KUBE_VERSION, NAMESPACE, render

ON = {"rollout": {"rbac": {"create": True, "serviceAccount": {"name": "default-editor", "namespace": "team-a"}}}}


def test_off_by_default(default_render):
    assert default_render.of_kind("Role") == [] and default_render.of_kind("RoleBinding") == []


def test_role_grants_get_patch_on_this_deployment_and_list_on_pods_to_the_pipeline_sa(chart):
    r = render(chart, ON)
    role, binding = r.one("Role"), r.one("RoleBinding")
    for doc in (role, binding):
        assert kubernetes_validate.validate(doc, KUBE_VERSION, strict=True) == "1.30"
        assert doc["metadata"]["namespace"] == NAMESPACE
    deployment = r.deployment["metadata"]["name"]
    rules = {(tuple(rule["apiGroups"]), tuple(rule["resources"])): rule for rule in role["rules"]}
    dep_rule = rules[(("apps",), ("deployments",))]
    assert dep_rule["resourceNames"] == [deployment] and sorted(dep_rule["verbs"]) == ["get", "patch"]
    assert rules[(("",), ("pods",))]["verbs"] == ["list"]
    assert len(rules) == 2  # nothing else: no secrets, no other deployments
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "default-editor", "namespace": "team-a"}]


@pytest.mark.parametrize("values, field", [
    ({"rollout": {"rbac": {"enabled": True}}}, "/rollout/rbac"),
    ({"rollout": {"rbac": {"create": True, "serviceAccount": {"name": "x", "namespace": "Bad_NS"}}}},
     "/rollout/rbac/serviceAccount/namespace"),
])
def test_schema_rejects_bad_rollout_values(chart, values, field):
    with pytest.raises(helm_python.HelmValuesError) as err:
        chart.validate_schema(chart.merge_values(values))
    assert field in str(err.value)


def test_lint_with_rollout_rbac_on_has_no_errors_or_warnings():
    from tests.chart.test_chart_lint import WARNING, _lint

    report = _lint(ON, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= WARNING] == []
