"""Build the offline installation bundle: `edge-agent-<version>-<pytag>-<platform>.tar.gz`.

Owns: turning uv.lock into a bundle a plant PC without network can install from: the agent's
wheel, the wheels of what the agent needs to run for the target Python and platform (the
project's dependencies only: no dev group and no extra, so not matplotlib, which only the
demo's chart uses: the `demo` extra), a requirements file with the sha256 of every wheel
(the lockfile's hashes, plus the agent wheel's own), the systemd files, the shipped
configurations and model packages, `install.sh`, and a SHA256SUMS over all of it. A
SHA256SUMS for the tarball itself is written beside it.

Must not: resolve anything anew (the lockfile is the only source of versions and hashes),
build a dependency from source (`--only-binary=:all:`), or touch the project's .venv.

The target Python is the interpreter that runs pip (`--python`, default: the one that runs
this script): pip evaluates environment markers against it, so its major.minor version is
the bundle's. The platform defaults to this machine's tags; `--platform TAG` (repeatable,
e.g. manylinux_2_17_x86_64) fetches wheels for another glibc or CPU instead.

Run: `./run bundle [--out DIR] [--python PY] [--platform TAG ...]` (or this file directly
with any Python >= 3.11 that has pip; uv is taken from .tools/bin/uv, $UV or the PATH).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class BuildError(Exception):
    """An expected failure: one line for the user, exit 1."""


def _uv() -> str:
    for candidate in (os.environ.get("UV"), str(ROOT / ".tools/bin/uv"), shutil.which("uv")):
        if candidate and Path(candidate).is_file():
            return candidate
    raise BuildError("uv not found: run ./run setup first, or set UV=/path/to/uv")


def _run(cmd: list[str], what: str) -> str:
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
    env.pop("VIRTUAL_ENV", None)
    # the commands are built here from fixed words and paths, never from untrusted text
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False, env=env)  # noqa: S603
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise BuildError(f"{what} failed (exit {result.returncode}): {' '.join(cmd)}\n{tail}")
    return result.stdout


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _target(python: str) -> str:
    """The major.minor version of the target interpreter, checked for pip."""
    out = _run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], "target Python")
    version = out.strip()
    if not re.fullmatch(r"3\.\d+", version) or int(version.split(".")[1]) < 11:
        raise BuildError(f"--python {python}: expected Python >= 3.11, found {version}")
    try:
        _run([python, "-m", "pip", "--version"], "pip")
    except BuildError:
        raise BuildError(f"--python {python}: expected a Python with pip, found none") from None
    return version


def _default_python() -> str:
    """This interpreter if it has pip, else the bootstrap venv's (which ./run made with pip)."""
    has_pip = importlib.util.find_spec("pip") is not None
    if has_pip or not (ROOT / ".tools/bin/python").is_file():
        return sys.executable
    return str(ROOT / ".tools/bin/python")


_LEGACY_GLIBC = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def _glibc_needed(wheels: list[str]) -> tuple[tuple[int, int], str] | None:
    """The newest glibc any wheel needs (each wheel: its most lenient tag), and the arch."""
    need: tuple[int, int] | None = None
    arch = ""
    for wheel in wheels:
        lowest: tuple[int, int] | None = None
        for tag in wheel.removesuffix(".whl").split("-")[-1].split("."):
            parts = tag.split("_")
            if parts[0] == "manylinux" and len(parts) >= 4:
                glibc, arch = (int(parts[1]), int(parts[2])), "_".join(parts[3:])
            elif parts[0] in _LEGACY_GLIBC:
                glibc, arch = _LEGACY_GLIBC[parts[0]], "_".join(parts[1:])
            else:
                continue
            lowest = glibc if lowest is None else min(lowest, glibc)
        if lowest is not None:
            need = lowest if need is None else max(need, lowest)
    return (need, arch) if need is not None else None


def _expand_platform(tag: str) -> list[str]:
    """manylinux_2_28_x86_64 -> itself and every older manylinux tag of that arch.

    pip takes --platform literally: a manylinux_2_28 target would otherwise miss the wheels
    that only ship as manylinux2014 / manylinux_2_17 (cffi, pydantic-core, zstandard).
    """
    parts = tag.split("_")
    if parts[0] != "manylinux" or len(parts) < 4 or not parts[2].isdigit():
        return [tag]
    major, minor, arch = int(parts[1]), int(parts[2]), "_".join(parts[3:])
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 4, -1)]
    legacy = [f"{name}_{arch}" for name, glibc in _LEGACY_GLIBC.items() if glibc <= (major, minor)]
    return tags + legacy


def _copy_payload(stage: Path) -> None:
    shutil.copy2(ROOT / "packaging/install.sh", stage / "install.sh")
    (stage / "install.sh").chmod(0o755)
    shutil.copytree(ROOT / "systemd", stage / "systemd")
    (stage / "docs").mkdir()
    for doc in ("operations.md", "sync-api.md", "model-package.md"):
        if (ROOT / "docs" / doc).is_file():  # the units' Documentation= points here
            shutil.copy2(ROOT / "docs" / doc, stage / "docs" / doc)
    (stage / "config").mkdir()
    for name in ("example-plant.toml", "demo.toml"):
        shutil.copy2(ROOT / "config" / name, stage / "config" / name)
    models = stage / "models"
    models.mkdir()
    for item in sorted((ROOT / "models").iterdir()):
        if item.is_dir() and not item.name.startswith((".", "_")):
            shutil.copytree(item, models / item.name, ignore=shutil.ignore_patterns("__pycache__"))
        elif item.suffix == ".pem":
            shutil.copy2(item, models / item.name)


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _write_sums(directory: Path, files: list[Path], name: str = "SHA256SUMS") -> Path:
    lines = [f"{_sha256(f)}  {f.relative_to(directory).as_posix()}\n" for f in sorted(files)]
    target = directory / name
    target.write_text("".join(lines))
    return target


def build(out: Path, python: str, platforms: list[str]) -> Path:
    uv = _uv()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    version = str(project["version"])
    py_version = _target(python)
    py_tag = "cp" + py_version.replace(".", "")
    platform = platforms[0] if platforms else sysconfig.get_platform().replace("-", "_")
    name = f"edge-agent-{version}-{py_tag}-{platform}"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edge-agent-bundle-") as tmp:
        stage = Path(tmp) / name
        wheels = stage / "wheels"
        wheels.mkdir(parents=True)
        requirements = stage / "requirements.txt"
        _run([uv, "export", "--locked", "--no-dev", "--no-emit-project", "--no-header",
              "--format", "requirements-txt", "--quiet", "-o", str(requirements)],
             "uv export")  # fmt: skip
        _run([uv, "build", "--wheel", "--quiet", "--out-dir", str(Path(tmp) / "dist")],
             "uv build")  # fmt: skip
        built = sorted((Path(tmp) / "dist").glob("edge_agent-*.whl"))
        if len(built) != 1:
            raise BuildError(f"uv build: expected one edge_agent wheel, found {built}")
        agent_wheel = wheels / built[0].name
        shutil.move(built[0], agent_wheel)
        cmd = [python, "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
               "--only-binary=:all:", "--require-hashes", "--no-deps",
               "--dest", str(wheels), "-r", str(requirements)]  # fmt: skip
        for tag in dict.fromkeys(t for p in platforms for t in _expand_platform(p)):
            cmd += ["--platform", tag]
        if platforms:
            cmd += ["--python-version", py_version, "--implementation", "cp"]
        _run(cmd, "pip download")  # --no-deps: the lock already lists every dependency
        with requirements.open("a") as f:  # after the download: PyPI is never asked for it
            f.write(f"edge-agent=={version} \\\n    --hash=sha256:{_sha256(agent_wheel)}\n")
        _copy_payload(stage)
        glibc = _glibc_needed([w.name for w in wheels.iterdir()])
        if glibc is not None and not platforms:  # name it after what the target must have
            platform = f"manylinux_{glibc[0][0]}_{glibc[0][1]}_{glibc[1]}"
        name = f"edge-agent-{version}-{py_tag}-{platform}"
        (stage / "BUNDLE").write_text(
            f"version={version}\npython={py_version}\nplatform={platform}\n"
            + (f"glibc={glibc[0][0]}.{glibc[0][1]}\n" if glibc else "")
        )
        files = [p for p in stage.rglob("*") if p.is_file()]
        _write_sums(stage, files)
        tarball = out / f"{name}.tar.gz"
        with tarfile.open(tarball, "w:gz", compresslevel=6) as tar:
            tar.add(stage, arcname=name, filter=_normalise)
    _write_sums(out, [tarball])
    return tarball


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output directory")
    parser.add_argument("--python", default=None, help="target interpreter (has pip)")
    parser.add_argument(
        "--platform", action="append", default=[], help="wheel platform tag (repeatable)"
    )
    args = parser.parse_args(argv)
    try:
        tarball = build(args.out.resolve(), args.python or _default_python(), args.platform)
    except BuildError as exc:
        sys.stderr.write(f"build_bundle: {exc}\n")
        return 1
    size_mb = tarball.stat().st_size / 1e6
    sys.stdout.write(
        f"{tarball} ({size_mb:.1f} MB); checksums in {tarball.parent / 'SHA256SUMS'}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
