"""deploy/Dockerfile and deploy/ray-cluster.yaml: the image starts what it is given (KubeRay
sets its containers' command; `ray up` runs `docker run ... IMAGE bash`), carries the Ray of
every manifest, and the `ray up` cluster passes Ray's own config schema with token auth on."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import jsonschema
import ray
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DOCKERFILE = (DEPLOY / "Dockerfile").read_text()
CLUSTER = yaml.safe_load((DEPLOY / "ray-cluster.yaml").read_text())


def _final_stage(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the last build stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    instructions = [tuple(ln.split(None, 1)) for ln in lines]
    last_from = max(i for i, (op, _) in enumerate(instructions) if op.upper() == "FROM")
    return [(op.upper(), args) for op, args in instructions[last_from:]]


def _exec_form(stage: list[tuple[str, str]], op: str) -> list[str] | None:
    """The last ``op`` (ENTRYPOINT or CMD) of the stage in exec form, None if it sets none."""
    found = [args for o, args in stage if o == op]
    if not found:
        return None
    value = json.loads(found[-1])  # shell form would wrap it in /bin/sh -c: not allowed here
    assert isinstance(value, list), f"{op} must be in exec form"
    return value


def docker_run_argv(dockerfile: str, run_args: list[str]) -> list[str]:
    """What a container of the image runs for ``docker run IMAGE RUN_ARGS``: the entrypoint
    followed by the arguments (or by CMD when there are none), Docker's rule. The image must
    set both itself so that the base image's choice cannot leak through."""
    stage = _final_stage(dockerfile)
    entrypoint, cmd = _exec_form(stage, "ENTRYPOINT"), _exec_form(stage, "CMD")
    assert entrypoint is not None and cmd is not None, "the image sets its own ENTRYPOINT and CMD"
    return entrypoint + (run_args or cmd)


def test_ray_up_starts_a_shell_in_the_image():
    """`ray up` starts each node's container with the command Ray builds here; what follows the
    image name must run as given (a shell that the launcher then `docker exec`s into)."""
    from ray.autoscaler._private.docker import docker_start_cmds

    command = docker_start_cmds("ray", CLUSTER["docker"]["image"], {}, CLUSTER["docker"]["container_name"],
                                CLUSTER["docker"].get("run_options", []), CLUSTER["cluster_name"], "/home/ray",
                                "docker")
    argv = shlex.split(command)
    run_args = argv[argv.index(CLUSTER["docker"]["image"]) + 1:]
    assert run_args == ["bash"]
    assert docker_run_argv(DOCKERFILE, run_args) == ["bash"]
    assert docker_run_argv(DOCKERFILE, ["doodl", "sweep", "x.yaml"]) == ["doodl", "sweep", "x.yaml"]
    assert docker_run_argv(DOCKERFILE, []) == ["bash"]
    assert docker_run_argv('FROM x\nENTRYPOINT ["doodl"]\nCMD ["--help"]\n', run_args) == ["doodl", "bash"]  # before


def test_the_image_keeps_the_ray_of_the_manifests_and_installs_no_system_packages():
    ray_version = re.search(r"^ARG RAY_VERSION=(\S+)$", DOCKERFILE, re.M).group(1)
    assert ray_version == ray.__version__  # the Ray the tests ran is the Ray the image ships
    bases = re.findall(r"^FROM (\S+)", DOCKERFILE, re.M)
    assert all(b.startswith("rayproject/ray:${RAY_VERSION}-py311-") for b in bases[:-1])
    stage = _final_stage(DOCKERFILE)
    assert ("ARG", "RAY_VERSION") in stage  # the pin below sees the version, not an empty string
    installs = " ".join(args for op, args in stage if op == "RUN")
    assert '"ray[default]==${RAY_VERSION}"' in installs  # pip cannot move Ray off the base image's
    assert "apt-get" not in installs  # nothing uses graphviz or any other system package
    manifests = [*(DEPLOY / "kuberay").glob("*.yaml")]
    versions = set(re.findall(r'rayVersion: "([^"]+)"', "".join(p.read_text() for p in manifests)))
    assert versions == {ray_version}


def test_ray_up_cluster_passes_rays_schema_with_token_auth_and_a_private_dashboard():
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    assert [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(CLUSTER)] == []
    starts = CLUSTER["head_start_ray_commands"] + CLUSTER["worker_start_ray_commands"]
    ray_starts = [c for c in starts if c.split()[-1] != "stop" and "ray start" in c]
    assert len(ray_starts) == 2 and all(c.startswith("RAY_AUTH_MODE=token ray start") for c in ray_starts)
    assert CLUSTER["file_mounts"] == {"~/.ray/auth_token": "~/.ray/auth_token"}  # one token, every node
    head = next(c for c in ray_starts if "--head" in c)
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in " ".join(starts)
    assert "--entrypoint" not in " ".join(CLUSTER["docker"].get("run_options", []))
