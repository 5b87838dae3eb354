"""The NetworkPolicy (on by default) admits the ingress controller, Prometheus, the release's `helm test` pod
and the configured extra peers to the server pods' HTTP port, and nothing else; it selects exactly the pods."""

from __future__ import annotations

from tests.chart.manifests import render


def _policy(r):
    return r.one("NetworkPolicy")


def test_default_policy_selects_the_server_pods_and_admits_only_the_known_peers(default_render):
    pol = _policy(default_render)
    spec = pol["spec"]
    pod_labels = default_render.deployment["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert spec["policyTypes"] == ["Ingress"], "egress stays open: feature store, object store"
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    peers = rule["from"]
    namespaces = [p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                  for p in peers if "namespaceSelector" in p]
    assert namespaces == ["ingress-nginx", "monitoring"]
    test_pod = default_render.one("Pod")["metadata"]["labels"]
    pod_peers = [p["podSelector"]["matchLabels"] for p in peers if "podSelector" in p]
    assert len(pod_peers) == 1 and pod_peers[0].items() <= test_pod.items(), "helm test can reach /readyz"
    container_ports = default_render.container("server")["ports"]
    assert any(p["name"] == "http" for p in container_ports)


def test_extra_peers_are_added_and_the_policy_can_be_turned_off(chart):
    extra = [{"podSelector": {"matchLabels": {"app": "search-frontend"}}}]
    r = render(chart, {"networkPolicy": {"extraFrom": extra, "prometheusFrom": []}})
    peers = _policy(r)["spec"]["ingress"][0]["from"]
    assert extra[0] in peers
    assert not any(p.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
                   == "monitoring" for p in peers)
    assert render(chart, {"networkPolicy": {"enabled": False}}).of_kind("NetworkPolicy") == []
