"""Cache locks (filelock) between real processes."""
from __future__ import annotations

import subprocess
import sys
import textwrap


def test_cache_lock_excludes_other_processes(tmp_path):
    """Two processes each hold the lock while they write 'start' ... 'end' with a pause between:
    the log shows one whole section, then the other, never interleaved."""
    log = tmp_path / "log.txt"
    script = textwrap.dedent(
        f"""
        import os, sys, time
        os.environ["NANOEMOX_CACHE"] = {str(tmp_path / "cache")!r}
        from nanoemox.storage import cache_lock
        with cache_lock("demo"):
            with open({str(log)!r}, "a") as f:
                f.write(sys.argv[1] + " start\\n"); f.flush()
                time.sleep(0.4)
                f.write(sys.argv[1] + " end\\n")
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, name]) for name in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    lines = log.read_text().split("\n")[:-1]
    assert len(lines) == 4 and lines[0].split()[0] == lines[1].split()[0] and lines[2].split()[0] == lines[3].split()[0]
    assert [x.split()[1] for x in lines] == ["start", "end", "start", "end"]
