"""featureStore.*: the chart renders the server's feature_store.yaml (a ConfigMap), mounts it where EBR_FEATURE_REPO
points and passes the Redis connection string from a Secret as REDIS_CONNECTION, which Feast expands when it
reads the file (os.path.expandvars in feast.repo_config.load_repo_config). Rendered with the real Helm engine,
validated with kubernetes-validate, and the rendered file parsed by Feast's own RepoConfig.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import helm_python
import kubernetes_validate
import pytest
import yaml

from tests.chart.manifests import CHART_DIR, KUBE_VERSION, RELEASE, REPO_ROOT, deep_merge, render

FULLNAME = f"{RELEASE}-query-tower"
STORE_CM = f"{FULLNAME}-feature-store"
ENV_VAR = "REDIS_CONNECTION"
REFERENCE = "${" + ENV_VAR + "}"  # how feature_store.yaml refers to it
PLACEHOLDER = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")
FEATURE_REPO = REPO_ROOT / "feature_repo"
DEFAULTS = yaml.safe_load((CHART_DIR / "values.yaml").read_text())

# Overrides a deployment may use, each rendered, validated and parsed below.
VARIANTS = {
    "defaults": {},
    "redis-cluster-custom-secret-s3-registry": {"featureStore": {
        "mountPath": "/etc/feast",
        "project": "ebr_staging",
        "registry": {"path": "s3://ebr-artifacts/feast/registry.pb", "cacheTtlSeconds": 0,
                     "pvc": {"claimName": ""}},
        "onlineStore": {"redis": {"existingSecret": "redis-creds", "secretKey": "feast", "redisType": "redis_cluster"}},
    }},
    "sqlite-demo-on-the-bundle-claim": {
        "bundles": {"pvc": {"claimName": "ebr-workspace", "subPath": "workspace/bundles"}},
        "featureStore": {"onlineStore": {"type": "sqlite"}},
    },
    "registry-under-the-bundle-mount": {"featureStore": {
        "registry": {"path": "/bundles/features/registry.db", "pvc": {"claimName": ""}},
    }},
    "kserve": {"kserve": {"enabled": True}},
}


def _env(container) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _server(rendered) -> dict:
    if rendered.of_kind("InferenceService"):
        pod = rendered.one("InferenceService")["spec"]["predictor"]
        return next(c for c in pod["containers"] if c["name"] == "kserve-container")
    return rendered.container("server")


def _pod(rendered) -> dict:
    if rendered.of_kind("InferenceService"):
        return rendered.one("InferenceService")["spec"]["predictor"]
    return rendered.pod_spec


def _store_yaml(rendered) -> str:
    (cm,) = [d for d in rendered.of_kind("ConfigMap") if d["metadata"]["name"] == STORE_CM]
    assert set(cm["data"]) == {"feature_store.yaml"}, "the ConfigMap holds the Feast file and nothing else"
    return cm["data"]["feature_store.yaml"]


def _load_repo_config(text: str, repo: Path, env: dict[str, str], monkeypatch):
    """What the server does: Feast's loader over <repo>/feature_store.yaml with the pod's environment."""
    from feast.repo_config import load_repo_config

    repo.mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(text, encoding="utf-8")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return load_repo_config(repo, repo / "feature_store.yaml")


@pytest.fixture(scope="module")
def rendered(chart):
    return {name: render(chart, values) for name, values in VARIANTS.items()}


# ---- validity ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_is_valid_kubernetes(rendered, name):
    for m in rendered[name].manifests:
        if m.doc["kind"] == "InferenceService":  # a CRD: its PodSpec is validated in test_kserve.py
            continue
        try:
            kubernetes_validate.validate(m.doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{name}: {m.template}: {m.doc['kind']} invalid at {'.'.join(map(str, e.path))}: {e.message}")


@pytest.mark.parametrize("name", list(VARIANTS))
def test_values_pass_the_schema_and_lint(chart, name):
    chart.validate_schema(chart.merge_values(VARIANTS[name]))
    report = helm_python.lint(CHART_DIR, VARIANTS[name], namespace="search", kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []


# ---- the rendered file is a Feast config ------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VARIANTS))
def test_rendered_file_is_a_feast_repo_config(rendered, name, tmp_path):
    from feast.repo_config import RepoConfig

    values = deep_merge(DEFAULTS, VARIANTS[name])
    fs = values["featureStore"]
    raw = yaml.safe_load(_store_yaml(rendered[name]))
    cfg = RepoConfig(repo_path=tmp_path, **raw)
    assert cfg.project == fs["project"]
    assert cfg.registry.path == fs["registry"]["path"]
    assert cfg.registry.cache_ttl_seconds == fs["registry"]["cacheTtlSeconds"]
    assert cfg.online_store.type == fs["onlineStore"]["type"]
    if fs["onlineStore"]["type"] == "redis":
        assert type(cfg.online_store).__name__ == "RedisOnlineStoreConfig"
        assert cfg.online_store.redis_type.value == fs["onlineStore"]["redis"]["redisType"]
        # not expanded by RepoConfig itself: the placeholder, never a value
        assert cfg.online_store.connection_string == REFERENCE
    else:
        assert type(cfg.online_store).__name__ == "SqliteOnlineStoreConfig"
        assert cfg.online_store.path == fs["onlineStore"]["sqlite"]["path"]


def test_entity_key_serialization_matches_feature_repo(rendered):
    """The server must decode the keys the pipeline wrote: the same version as feature_repo's configs."""
    rendered_version = yaml.safe_load(_store_yaml(rendered["defaults"]))["entity_key_serialization_version"]
    for name in ("feature_store.yaml", "feature_store.production.yaml"):
        repo_version = yaml.safe_load((FEATURE_REPO / name).read_text())["entity_key_serialization_version"]
        assert rendered_version == repo_version, name


def test_defaults_are_redis_with_the_workspace_registry(rendered, tmp_path, monkeypatch):
    r = rendered["defaults"]
    cfg = _load_repo_config(_store_yaml(r), tmp_path / "repo", {ENV_VAR: "redis-master.redis:6379,db=2"},
                            monkeypatch)
    assert type(cfg.online_store).__name__ == "RedisOnlineStoreConfig"
    assert cfg.online_store.connection_string == "redis-master.redis:6379,db=2"
    assert cfg.project == "ebr" and cfg.entity_key_serialization_version == 3
    assert cfg.registry.path == "/mnt/ebr-features/registry.db"
    volumes = {v["name"]: v for v in r.pod_spec["volumes"]}
    assert volumes["feature-registry"]["persistentVolumeClaim"] == {"claimName": "ebr-workspace", "readOnly": True}
    mounts = {m["name"]: m for m in r.container("server")["volumeMounts"]}
    assert mounts["feature-registry"] == {"name": "feature-registry", "mountPath": "/mnt/ebr-features",
                                          "readOnly": True, "subPath": "workspace/features"}


@pytest.mark.parametrize("secret", [
    "redis.prod:6380,password=p#ss: 'x' \"y\" \\z,ssl=true",
    "10.0.0.7:6379\n",  # a Secret made with `echo` ends in a newline
])
def test_any_connection_string_survives_the_expansion(rendered, secret, tmp_path, monkeypatch):
    """Feast substitutes the text before parsing YAML: the chart's literal block keeps quotes, '#', ': ' intact."""
    cfg = _load_repo_config(_store_yaml(rendered["defaults"]), tmp_path / "repo", {ENV_VAR: secret}, monkeypatch)
    assert cfg.online_store.connection_string == secret.rstrip("\n")


def test_feast_expands_environment_variables_when_reading_the_file(tmp_path, monkeypatch):
    """The mechanism the chart relies on exists in the installed Feast: ${VAR} is expanded by load_repo_config."""
    import inspect

    from feast.repo_config import load_repo_config

    assert "os.path.expandvars" in inspect.getsource(load_repo_config)
    text = "project: p\nprovider: local\nregistry: ${REG_DIR}/registry.db\nentity_key_serialization_version: 3\n"
    cfg = _load_repo_config(text, tmp_path / "repo", {"REG_DIR": "/somewhere"}, monkeypatch)
    assert cfg.registry.path == "/somewhere/registry.db"


# ---- the connection string stays in the Secret ------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n, v in VARIANTS.items() if "sqlite" not in n])
def test_redis_connection_comes_from_the_secret_not_a_config_map(rendered, name):
    r = rendered[name]
    values = deep_merge(DEFAULTS, VARIANTS[name])
    redis = values["featureStore"]["onlineStore"]["redis"]
    env = _env(_server(r))[ENV_VAR]
    assert env == {"name": ENV_VAR, "valueFrom": {"secretKeyRef": {"name": redis["existingSecret"],
                                                                    "key": redis["secretKey"]}}}
    # the file names exactly that variable, and only that one
    assert PLACEHOLDER.findall(_store_yaml(r)) == [ENV_VAR]
    # no object the chart renders carries the Secret's content or creates that Secret
    assert all(s["metadata"]["name"] != redis["existingSecret"] for s in r.of_kind("Secret"))
    for cm in r.of_kind("ConfigMap"):
        assert ENV_VAR not in cm["data"]
        assert not any("connection_string: " in v and "${" not in v for v in cm["data"].values())


def test_sqlite_demo_has_no_redis_env(rendered):
    assert ENV_VAR not in _env(_server(rendered["sqlite-demo-on-the-bundle-claim"]))
    assert PLACEHOLDER.findall(_store_yaml(rendered["sqlite-demo-on-the-bundle-claim"])) == []


def test_existing_config_map_with_the_production_file_gets_its_redis_variable(chart):
    """featureStore.existingConfigMap: the chart mounts it instead of rendering one and still passes the Secret as
    the variable feature_repo/feature_store.production.yaml reads."""
    r = render(chart, {"featureStore": {"existingConfigMap": "ebr-prod-store"}})
    assert [cm["metadata"]["name"] for cm in r.of_kind("ConfigMap")] == [FULLNAME]
    volumes = {v["name"]: v for v in r.pod_spec["volumes"]}
    assert volumes["feature-store"]["configMap"]["name"] == "ebr-prod-store"
    production = (FEATURE_REPO / "feature_store.production.yaml").read_text()
    assert REFERENCE in production
    assert _env(r.container("server"))[ENV_VAR]["valueFrom"]["secretKeyRef"]["name"] == "ebr-feature-store"


# ---- EBR_FEATURE_REPO, the volume and the mount line up ---------------------------------------------------------


def _mounted_at(pod: dict, container: dict, path: str) -> tuple[dict, dict]:
    """The (volumeMount, volume) a file path of the container lies on."""
    mounts = [m for m in container["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/")]
    assert len(mounts) == 1, (path, container["volumeMounts"])
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[0]["name"])
    return mounts[0], volume


@pytest.mark.parametrize("name", list(VARIANTS))
def test_feature_repo_env_points_at_the_mounted_file(rendered, name):
    r = rendered[name]
    server, pod = _server(r), _pod(r)
    repo = r.server_config_map["data"]["EBR_FEATURE_REPO"]
    assert server["envFrom"] == [{"configMapRef": {"name": r.server_config_map["metadata"]["name"]}}]
    assert "--feature-repo" not in server["args"], "an argument would win over EBR_FEATURE_REPO"
    mount, volume = _mounted_at(pod, server, f"{repo}/feature_store.yaml")
    assert mount["mountPath"] == repo and mount["readOnly"] is True
    assert volume["configMap"] == {"name": STORE_CM,
                                   "items": [{"key": "feature_store.yaml", "path": "feature_store.yaml"}]}
    assert _store_yaml(r), "the key the volume projects exists in the rendered ConfigMap"


@pytest.mark.parametrize("name", list(VARIANTS))
def test_registry_and_sqlite_files_lie_on_a_read_only_volume(rendered, name):
    r = rendered[name]
    raw = yaml.safe_load(_store_yaml(r))
    files = [raw["registry"]["path"]]
    if raw["online_store"]["type"] == "sqlite":
        files.append(raw["online_store"]["path"])
    for path in files:
        if path.startswith("s3://"):
            continue
        mount, volume = _mounted_at(_pod(r), _server(r), path)
        assert mount.get("readOnly") is True, path
        assert "persistentVolumeClaim" in volume, path


def test_the_bundle_claim_is_mounted_twice_not_claimed_twice(rendered):
    r = rendered["sqlite-demo-on-the-bundle-claim"]
    claims = [v["persistentVolumeClaim"]["claimName"] for v in r.pod_spec["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ["ebr-workspace"]
    mounts = [(m["mountPath"], m.get("subPath")) for m in r.container("server")["volumeMounts"]
              if m["name"] == "bundles"]
    assert mounts == [("/bundles", "workspace/bundles"), ("/mnt/ebr-features", "workspace/features")]


def test_disabled_renders_no_store_and_the_server_gets_none(chart):
    from serving.settings import ServerSettings

    r = render(chart, {"featureStore": {"enabled": False}})
    assert [cm["metadata"]["name"] for cm in r.of_kind("ConfigMap")] == [FULLNAME]
    server = r.container("server")
    assert ENV_VAR not in _env(server)
    assert {m["name"] for m in server["volumeMounts"]} == {"bundles", "tmp"}
    assert {v["name"] for v in r.pod_spec["volumes"]} == {"bundles", "tmp"}
    # An empty value, not a missing one: it overrides the image's EBR_FEATURE_REPO=/app/feature_repo.
    env = r.server_config_map["data"]
    assert env["EBR_FEATURE_REPO"] == ""
    image_env = {"EBR_BUNDLES_DIR": "/bundles", "EBR_FEATURE_REPO": "/app/feature_repo"}
    assert ServerSettings.resolve({}, {**image_env, **env}).feature_repo is None
    assert "no_feature_store" in r.notes
    for m in r.manifests:
        kubernetes_validate.validate(m.doc, KUBE_VERSION, strict=True)


def test_a_feature_store_change_rolls_the_pods(chart, rendered):
    def checksum(r):
        return r.deployment["spec"]["template"]["metadata"]["annotations"]["checksum/feature-store"]

    base = rendered["defaults"]
    assert checksum(base) == hashlib.sha256(base.text("feature-store-configmap.yaml").encode()).hexdigest()
    assert checksum(render(chart, {"featureStore": {"registry": {"cacheTtlSeconds": 30}}})) != checksum(base)
    assert checksum(render(chart, {"replicaCount": 5})) == checksum(base)


def test_notes_name_the_secret_and_the_degraded_mode(rendered):
    notes = rendered["defaults"].notes
    assert "create secret generic ebr-feature-store --from-literal=redis-connection=" in notes
    assert "feature store unavailable" in notes


# ---- bad values fail at render time, naming the value -----------------------------------------------------------

BAD = [
    ("redis without a Secret", {"onlineStore": {"redis": {"existingSecret": ""}}},
     "featureStore.onlineStore.redis.existingSecret is required"),
    ("Secret without a key", {"onlineStore": {"redis": {"secretKey": ""}}},
     "featureStore.onlineStore.redis.secretKey is required"),
    ("registry on no volume", {"registry": {"path": "/data/registry.db", "pvc": {"claimName": ""}}},
     "featureStore.registry.path \"/data/registry.db\" is neither"),
    ("registry outside the claim's mount", {"registry": {"path": "/var/registry.db"}},
     "featureStore.registry.path \"/var/registry.db\" is neither"),
    ("sqlite on no volume", {"onlineStore": {"type": "sqlite", "sqlite": {"path": "/var/online.db"}}},
     "featureStore.onlineStore.sqlite.path \"/var/online.db\" is not a file under"),
    ("mount over the bundles", {"mountPath": "/bundles"}, "featureStore.mountPath /bundles is already a mount"),
    ("registry mount over /tmp", {"registry": {"pvc": {"mountPath": "/tmp"}, "path": "/tmp/registry.db"}},
     "featureStore.registry.pvc.mountPath /tmp is already a mount"),
]


@pytest.mark.parametrize(("case", "override", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_feature_store_values_name_the_field(chart, case, override, message):
    with pytest.raises(helm_python.HelmRenderError, match=re.escape(message)):
        render(chart, {"featureStore": override})


def test_sqlite_refuses_several_search_workers(chart):
    with pytest.raises(helm_python.HelmRenderError, match="server.searchWorkers 2 needs a thread-safe online store"):
        render(chart, {"server": {"searchWorkers": 2}, "featureStore": {"onlineStore": {"type": "sqlite"}}})
    render(chart, {"server": {"searchWorkers": 2}})  # Redis serves several workers


SCHEMA_BAD = [
    ({"onlineStore": {"type": "dynamodb"}}, "/featureStore/onlineStore/type"),
    ({"registry": {"path": "registry.db"}}, "/featureStore/registry/path"),
    ({"registry": {"path": "http://example.com/registry.db"}}, "/featureStore/registry/path"),
    ({"project": "Bad-Name"}, "/featureStore/project"),
    ({"entityKeySerializationVersion": 4}, "/featureStore/entityKeySerializationVersion"),
    ({"onlineStore": {"redis": {"redisType": "memcached"}}}, "/featureStore/onlineStore/redis/redisType"),
    ({"onlineStore": {"redis": {"connectionString": "redis:6379"}}}, "connectionString"),
    ({"path": "/app/feature_repo"}, "'path' not allowed"),
]


@pytest.mark.parametrize(("override", "where"), SCHEMA_BAD, ids=[w for _, w in SCHEMA_BAD])
def test_schema_rejects_bad_feature_store_values(chart, override, where):
    with pytest.raises(helm_python.HelmValuesError, match=re.escape(where)):
        render(chart, {"featureStore": override})


def test_the_old_feature_repo_key_is_refused_by_name(chart):
    with pytest.raises(helm_python.HelmValuesError, match="'featureRepo' not allowed"):
        render(chart, {"featureRepo": {"path": "/app/feature_repo"}})
