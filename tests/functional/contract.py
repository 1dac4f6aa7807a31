"""Clean virtual environments holding exactly one function's pinned requirements, and a Dockerfile
read the way ``docker build`` would lay out the inference image.

A deployed function has only what its requirements files install (plus, for the zip functions,
the shared layer). These venvs make the tests see the same: an import a file forgot fails here,
not in Lambda. Each venv is cached under ``.venv-contract/`` on a hash of its requirements files and
interpreter, so a second run reuses it.

No image can be built here, so :func:`read_dockerfile` and :func:`lay_out` stand in for the build:
the build arguments select the ``ARG`` values, the ``RUN`` lines say which requirements files are
installed (conditions on an ``ARG`` included), and ``COPY``/``ADD`` put files where the image has
them. Anything the reader does not understand (a remote ``ADD``, ``COPY --from``, a shell test it
cannot evaluate) raises, so a Dockerfile change is never silently skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAMBDA_PYTHON = "3.12.1"
LAMBDA_WORKDIR = "/var/task"
"""``WORKDIR`` and ``LAMBDA_TASK_ROOT`` of the AWS Lambda Python base images."""


def interpreter() -> list[str]:
    """python3.12 (the Lambda runtime) when pyenv or the PATH has it, else this interpreter."""
    env = {**os.environ, "PYENV_VERSION": LAMBDA_PYTHON}
    found = shutil.which("python3.12")
    if found and subprocess.run([found, "-c", "pass"], env=env, capture_output=True).returncode == 0:
        return [found]
    return [sys.executable]


def clean_venv(requirements: Path, *more: Path) -> Path:
    """The python of a venv holding only the requirements files given (``--no-deps``, then ``pip check``)."""
    files = [requirements, *more]
    command = interpreter()
    key = hashlib.sha256(b"".join(path.read_bytes() for path in files) + command[0].encode()).hexdigest()[:16]
    names = "+".join(path.stem for path in files)
    venv = ROOT / ".venv-contract" / f"{requirements.parent.name}-{names}-{key}"
    python = venv / "bin" / "python"
    if (venv / ".complete").is_file():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run(
        [*command, "-m", "venv", str(venv)], check=True, env={**os.environ, "PYENV_VERSION": LAMBDA_PYTHON}
    )
    installs = [arg for path in files for arg in ("--requirement", str(path))]
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", *installs], check=True)
    subprocess.run([str(python), "-m", "pip", "check"], check=True)
    (venv / ".complete").touch()
    return python


# ---- the Dockerfile ---------------------------------------------------------------------------------


class DockerfileError(ValueError):
    """A Dockerfile line this reader cannot lay out faithfully."""


@dataclass
class Image:
    """What a build of the Dockerfile holds, as far as the contract test needs it."""

    variables: dict[str, str]
    """``ARG`` values after the build arguments, then ``ENV`` values, as later lines see them."""
    env: dict[str, str] = field(default_factory=dict)
    """The image's ``ENV``."""
    cmd: list[str] = field(default_factory=list)
    copied: dict[str, Path] = field(default_factory=dict)
    """Each file the image holds from the build context: image path -> source in the repository."""
    requirements: list[str] = field(default_factory=list)
    """Image paths of the requirements files the ``RUN`` lines install, in order."""

    def requirement_sources(self) -> list[Path]:
        """The repository files behind :attr:`requirements`."""
        missing = [path for path in self.requirements if path not in self.copied]
        if missing:
            raise DockerfileError(f"RUN installs {missing}, which no COPY or ADD put in the image")
        return [self.copied[path] for path in self.requirements]


def instructions(text: str) -> list[tuple[str, str]]:
    """(instruction, arguments) per Dockerfile line, continuation lines joined, comments dropped."""
    lines = [line.strip() for line in text.splitlines()]
    joined = "\n".join(line for line in lines if line and not line.startswith("#")).replace("\\\n", " ")
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines()]


def read_dockerfile(
    text: str, build_args: Mapping[str, str], context: Path, layout: Path | None = None
) -> Image:
    """Lay the image's files out under ``layout`` and return what the image holds.

    ``build_args`` override the defaults of declared ``ARG`` lines, as ``--build-arg`` does.
    Without ``layout`` nothing is copied and a missing source is no error: the reading of the
    ``ARG``, ``ENV`` and ``RUN`` lines alone.
    """
    image = Image(variables={"LAMBDA_TASK_ROOT": LAMBDA_WORKDIR})
    workdir = LAMBDA_WORKDIR
    for instruction, args in instructions(text):
        if instruction == "ARG":
            name, _, default = args.partition("=")
            image.variables[name.strip()] = build_args.get(name.strip(), substitute(default, image.variables))
        elif instruction == "ENV":
            for name, value in _env_pairs(args):
                image.env[name] = image.variables[name] = substitute(value, image.variables)
        elif instruction == "WORKDIR":
            workdir = str(Path(workdir, substitute(args, image.variables)))
        elif instruction in ("COPY", "ADD"):
            _copy(instruction, substitute(args, image.variables), context, layout, workdir, image)
        elif instruction == "RUN":
            image.requirements += installed_requirements(args, image.variables)
        elif instruction == "CMD":
            image.cmd = json.loads(args)
    return image


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """``$NAME`` and ``${NAME}`` replaced by their values (an undefined one by nothing)."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m.group(1) or m.group(2), ""), text)


def _env_pairs(args: str) -> list[tuple[str, str]]:
    words = shlex.split(args)
    if "=" not in words[0]:
        return [(words[0], " ".join(words[1:]))]  # the legacy form: ENV NAME value
    return [(word.split("=", 1)[0], word.split("=", 1)[1]) for word in words]


_KEPT_FLAGS = ("--chown", "--chmod", "--link")
_ARCHIVES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def _copy(
    instruction: str, args: str, context: Path, layout: Path | None, workdir: str, image: Image
) -> None:
    words = json.loads(args) if args.startswith("[") else shlex.split(args)
    flags = [word for word in words if word.startswith("--")]
    for flag in flags:
        if flag.split("=", 1)[0] not in _KEPT_FLAGS:
            raise DockerfileError(f"{instruction} {flag} takes files from outside the build context")
    *sources, target = [word for word in words if not word.startswith("--")]
    target = target if target.startswith("/") else f"{workdir.rstrip('/')}/{target}"
    into_directory = target.endswith("/") or len(sources) > 1

    for source in sources:
        if re.match(r"^[a-z]+://|^git@", source):
            raise DockerfileError(f"{instruction} {source}: a remote source is not in the build context")
        paths = sorted(context.glob(source)) if any(c in source for c in "*?[") else [context / source]
        for path in paths:
            if not path.exists():
                if layout is None:
                    continue
                raise DockerfileError(f"Dockerfile {instruction.lower()}s {source}, which does not exist")
            if instruction == "ADD" and path.is_file() and path.name.endswith(_ARCHIVES):
                _extract(path, target, layout, image)
            elif path.is_dir():
                _place_tree(path, target, layout, image)
            else:
                _place(path, f"{target.rstrip('/')}/{path.name}" if into_directory else target, layout, image)


def _place(source: Path, image_path: str, layout: Path | None, image: Image) -> None:
    image.copied[image_path] = source
    if layout is not None:
        destination = layout / image_path.lstrip("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)


def _place_tree(source: Path, target: str, layout: Path | None, image: Image) -> None:
    # A directory's contents land in the target, not the directory itself (as docker does).
    for path in sorted(source.rglob("*")):
        if path.is_file():
            _place(path, f"{target.rstrip('/')}/{path.relative_to(source).as_posix()}", layout, image)


def _extract(archive: Path, target: str, layout: Path | None, image: Image) -> None:
    # ADD unpacks a local tar archive into the target directory.
    with tarfile.open(archive) as tar:
        if layout is not None:
            tar.extractall(layout / target.lstrip("/"), filter="data")
        for member in tar.getmembers():
            if member.isfile():
                image.copied[f"{target.rstrip('/')}/{member.name}"] = archive


# ---- RUN lines: which requirements files they install ------------------------------------------------

_SEPARATORS = {";", "&&", "||", "|", "&"}
_REQUIREMENT_OPTIONS = ("-r", "--requirement")


def installed_requirements(script: str, variables: Mapping[str, str]) -> list[str]:
    """The requirements files a ``RUN`` shell line installs with pip, given the build's variables.

    Reads commands joined by ``&&``, ``||`` and ``;`` and ``if [ "$VAR" = value ]; then ...;
    [else ...;] fi`` blocks on build variables; a pip install inside a branch the variables do
    not take is left out.

    Raises
    ------
    DockerfileError
        For a condition other than an ``=``, ``==`` or ``!=`` test.
    """
    taken: list[bool] = []
    found: list[str] = []
    for words in _commands(script, variables):
        keyword = words[0]
        if keyword == "if":
            taken.append(_test(words[1:]))
            continue
        if keyword in ("then", "else", "fi"):
            if keyword == "else":
                taken[-1] = not taken[-1]
            if keyword == "fi":
                taken.pop()
            words = words[1:]
        if words and all(taken) and _is_pip_install(words):
            found += _requirement_arguments(words)
    return found


def _commands(script: str, variables: Mapping[str, str]) -> Iterator[list[str]]:
    lexer = shlex.shlex(substitute(script, variables), posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    words: list[str] = []
    for token in lexer:
        if token in _SEPARATORS:
            if words:
                yield words
            words = []
        elif token in ("then", "else", "fi") and not words:
            yield [token]
        else:
            words.append(token)
    if words:
        yield words


def _test(words: list[str]) -> bool:
    if words[:1] == ["test"]:
        words = ["[", *words[1:], "]"]
    if len(words) != 5 or words[0] != "[" or words[4] != "]" or words[2] not in ("=", "==", "!="):
        raise DockerfileError(f"cannot evaluate the RUN condition {' '.join(words)!r}")
    equal = words[1] == words[3]
    return equal if words[2] != "!=" else not equal


def _is_pip_install(words: list[str]) -> bool:
    pip = any(Path(word).name in ("pip", "pip3") for word in words) or "-m pip" in " ".join(words)
    return pip and "install" in words


def _requirement_arguments(words: list[str]) -> list[str]:
    found = []
    for index, word in enumerate(words):
        if word in _REQUIREMENT_OPTIONS and index + 1 < len(words):
            found.append(words[index + 1])
        elif word.startswith("--requirement="):
            found.append(word.split("=", 1)[1])
    return found
