"""`edge-agent keygen`, `model sign` and `model verify` on a copy of the demo package."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

AGENT = [sys.executable, "-m", "agent"]
PACKAGE = Path(__file__).resolve().parents[2] / "models" / "vrm-quality" / "1.0.0"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AGENT, *args], capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip


def test_keygen_sign_verify_and_a_tampered_model(tmp_path: Path) -> None:
    package = tmp_path / "vrm-quality" / "1.0.0"
    shutil.copytree(PACKAGE, package)
    key, pub = tmp_path / "k.pem", tmp_path / "k.pub.pem"
    assert _cli("keygen", "--private-key", str(key), "--public-key", str(pub)).returncode == 0
    assert key.stat().st_mode & 0o077 == 0
    assert _cli("keygen", "--private-key", str(key), "--public-key", str(pub)).returncode == 1
    signed = _cli("model", "sign", str(package), "--key", str(key))
    assert signed.returncode == 0, signed.stderr
    ok = _cli("model", "verify", str(package), "--public-key", str(pub))
    assert ok.returncode == 0, ok.stderr
    assert "model vrm-quality 1.0.0" in ok.stdout and "signature: valid" in ok.stdout
    assert "output s28 [MPa]" in ok.stdout
    wrong_key = _cli("model", "verify", str(package), "--public-key",
                     str(PACKAGE.parents[1] / "demo-signing-key.pub.pem"))  # fmt: skip
    assert wrong_key.returncode == 1 and "signature: invalid" in wrong_key.stdout
    data = bytearray((package / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (package / "model.onnx").write_bytes(bytes(data))
    tampered = _cli("model", "verify", str(package), "--public-key", str(pub))
    assert tampered.returncode == 1
    assert "sha256" in tampered.stderr and "Traceback" not in tampered.stderr
