"""Ready for Hugging Face Spaces: the README header, the pins, Debian packages and file sizes the Hub accepts."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
# The keys of a Space's README header, from Hugging Face's "Spaces Configuration Reference".
DOCUMENTED_KEYS = {
    "title", "emoji", "colorFrom", "colorTo", "sdk", "python_version", "sdk_version", "suggested_hardware",
    "suggested_storage", "app_file", "app_port", "base_path", "fullWidth", "header", "short_description", "models",
    "datasets", "tags", "thumbnail", "pinned", "hf_oauth", "hf_oauth_scopes", "hf_oauth_expiration_minutes",
    "hf_oauth_authorized_org", "disable_embedding", "startup_duration_timeout", "custom_headers",
    "preload_from_hub", "license",
}
COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
PIN = re.compile(r"^[A-Za-z0-9_.\[\]-]+==[A-Za-z0-9_.+-]+$")
HUB_FILE_LIMIT = 10 * 2**20


def readme_header() -> dict:
    text = (ROOT / "README.md").read_text()
    match = re.match(r"^---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, "README.md does not start with a --- YAML header ---"
    return yaml.safe_load(match.group(1))


def requirement_lines(name: str) -> list[str]:
    lines = [line.split("#")[0].strip() for line in (ROOT / name).read_text().splitlines()]
    return [line for line in lines if line]


def pinned_version(package: str) -> str:
    for line in requirement_lines("requirements.txt"):
        name, _, version = line.partition("==")
        if name.lower() == package:
            return version
    raise AssertionError(f"{package} is not in requirements.txt")


def test_readme_header_has_the_documented_keys():
    header = readme_header()
    assert set(header) <= DOCUMENTED_KEYS, set(header) - DOCUMENTED_KEYS
    for key in ("title", "emoji", "colorFrom", "colorTo", "sdk", "sdk_version", "app_file", "python_version"):
        assert header.get(key), f"{key} is missing from the README header"
    assert header["sdk"] == "gradio"
    assert {header["colorFrom"], header["colorTo"]} <= COLORS
    assert len(header.get("short_description", "")) <= 60


def test_header_matches_the_project():
    header = readme_header()
    assert str(header["sdk_version"]) == pinned_version("gradio")
    assert (ROOT / header["app_file"]).is_file()
    assert re.fullmatch(r"3\.\d+(\.\d+)?", str(header["python_version"])), header["python_version"]


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-dev.txt"])
def test_every_requirement_is_pinned(name):
    for line in requirement_lines(name):
        assert line.startswith("-r ") or PIN.match(line), f"{name}: {line!r} is not pinned with =="


@pytest.mark.skipif(not shutil.which("apt-cache"), reason="needs apt-cache")
def test_packages_txt_names_debian_bookworm_packages():
    release = Path("/etc/os-release").read_text()
    if "VERSION_CODENAME=bookworm" not in release:
        pytest.skip("this machine is not Debian bookworm, which Spaces run on")
    names = requirement_lines("packages.txt")
    assert names
    for name in names:
        shown = subprocess.run(["apt-cache", "show", "--no-all-versions", name], capture_output=True, text=True)
        assert shown.returncode == 0 and f"Package: {name}" in shown.stdout, f"{name} is not a bookworm package"


def test_no_tracked_file_is_over_the_hubs_limit():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    files = [ROOT / name for name in listed.decode().split("\0") if name]
    assert files
    large = [(f.name, f.stat().st_size) for f in files if f.exists() and f.stat().st_size > HUB_FILE_LIMIT]
    assert not large, f"files over 10 MB need Git LFS on the Hub: {large}"
