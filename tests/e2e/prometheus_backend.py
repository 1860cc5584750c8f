"""A real Prometheus for the tests: its own config, storage and loopback port, queried over its HTTP API.

Used by the alert and dashboard tests and the end-to-end scrape test. Prometheus and promtool
come from Debian's `prometheus` package, which `make test` installs through
scripts/install-prometheus.sh.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, free_port, wait_until

RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "rules.test.yml"
EXAMPLE_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "smallguard.json"
JOB = "smallguard"  # the job name the example config and the SmallguardTargetDown alert use



def tool(name: str) -> str:
    """The path of ``prometheus`` or ``promtool``; fails the test with the fix when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name!r} is not on PATH: run scripts/install-prometheus.sh (as root), or install "
                    "Prometheus so that 'prometheus' and 'promtool' are on PATH")
    return path


class PromQLError(AssertionError):
    """Prometheus refused or failed a query."""


class Prometheus:
    """A running Prometheus, by its base URL."""

    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to (``at``: unix seconds, default now); raises
        PromQLError with Prometheus' own message when the query fails."""
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as reply:
                body = json.load(reply)
        except urllib.error.HTTPError as error:  # 400/422: a bad expression, with a JSON body that says why
            body = json.load(error)
        if body.get("status") != "success":
            raise PromQLError(f"Prometheus could not evaluate {expr!r}: {body.get('errorType')}: {body.get('error')}")
        data = body["data"]
        if data["resultType"] != "vector":
            return [{"metric": {}, "value": data["result"]}]  # a scalar or string
        return data["result"]

    def values(self, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
        """The samples of ``expr`` now, by their sorted labels."""
        return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in self.query(expr)}

    def scalar(self, expr: str) -> float | None:
        """The value of a one-sample ``expr``, or None while it has no sample."""
        found = self.query(expr)
        if len(found) > 1:
            raise AssertionError(f"{expr!r} gave {len(found)} samples where one was expected: {found}")
        return float(found[0]["value"][1]) if found else None


def write_config(folder: Path, targets: list[str], interval: str = "1s") -> Path:
    """A Prometheus config that scrapes ``targets`` as job "smallguard" and loads the shipped rules."""
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": targets}]}],
    }
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextmanager
def running_prometheus(folder: Path, targets: list[str]) -> Iterator[Prometheus]:
    """A real ``prometheus`` scraping ``targets`` every second, with the shipped rules, its data in
    ``folder`` and its API on a free loopback port; stopped (and its log shown on failure) at exit."""
    folder.mkdir(parents=True, exist_ok=True)
    config, log = write_config(folder, targets), folder / "prometheus.log"
    address = f"127.0.0.1:{free_port()}"
    command = [tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
               f"--web.listen-address={address}", "--log.level=warn"]
    with log.open("w") as output, subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT) as process:
        prometheus = Prometheus(f"http://{address}", log)
        try:
            def ready() -> bool:
                if process.poll() is not None:
                    pytest.fail(f"prometheus exited with {process.returncode}:\n{log.read_text()}")
                try:
                    with urllib.request.urlopen(f"{prometheus.url}/-/ready", timeout=5) as reply:
                        return reply.status == 200
                except OSError:
                    return False

            wait_until(ready, f"prometheus to be ready on {address}")
            yield prometheus
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
