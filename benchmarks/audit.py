"""Audit the installed dependencies for known vulnerabilities with pip-audit, where reachable.

    python benchmarks/audit.py

Runs `pip-audit` (install it with `pip install pip-audit`) against this environment using
PyPI's vulnerability data, falling back to OSV; prints the findings, or says plainly that
neither service could be reached (offline machines), and checks the floors pyproject.toml
pins for known fixes against what is installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

FLOORS = {"torch": "2.6", "pillow": "12.2", "python-multipart": "0.0.18", "starlette": "0.47.2", "onnx": "1.21"}


def _tuple(v: str) -> tuple[int, ...]:
    return tuple(int("".join(c for c in part if c.isdigit()) or 0) for part in v.split("+")[0].split(".")[:3])


def main() -> int:
    print("dependency floors (known fixes):")
    for name, floor in FLOORS.items():
        try:
            have = version(name)
        except PackageNotFoundError:
            print(f"  {name:<18} not installed (floor {floor})")
            continue
        print(
            f"  {name:<18} {have:<14} floor {floor:<8} {'ok' if _tuple(have) >= _tuple(floor) else 'BELOW THE FLOOR'}"
        )
    tool = shutil.which("pip-audit") or str(Path(sys.executable).with_name("pip-audit"))
    if not Path(tool).exists():
        print("pip-audit is not installed: pip install pip-audit")
        return 0
    for service in ("pypi", "osv"):
        result = subprocess.run([tool, "--progress-spinner", "off", "-s", service], capture_output=True, text=True)
        offline = "ConnectionError" in result.stderr
        unreachable = result.stdout.count("could not be audited")
        if result.returncode == 0 and not (unreachable or offline):
            print(f"pip-audit ({service}): no known vulnerabilities")
            return 0
        if result.returncode == 1 and "Found" in (result.stdout + result.stderr):
            print(result.stdout + result.stderr)
            return 1
        why = "no connection" if offline else f"{unreachable} packages could not be checked"
        print(f"pip-audit ({service}): service not reachable from this machine ({why})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
