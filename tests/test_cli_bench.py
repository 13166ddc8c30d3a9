"""`n2n-fast bench` forwards to benchmarks/report.py or quality.py; their help names the command typed."""
import subprocess
import sys

import pytest


@pytest.mark.parametrize("argv, usage", [(["--help"], "usage: n2n-fast bench ["),
                                         (["quality", "-h"], "usage: n2n-fast bench quality [")])
def test_bench_help_names_the_command(argv, usage):
    done = subprocess.run([sys.executable, "-m", "n2n_fast", "bench", *argv], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(usage), done.stdout[:200]
    assert "report.py" not in done.stdout.splitlines()[0] and "quality.py" not in done.stdout.splitlines()[0]
