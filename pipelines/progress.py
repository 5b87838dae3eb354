"""Live progress of a local DAG run on the terminal: each step as it starts and finishes, with a one-line result,
and the newest progress bar of the running steps (their tqdm output goes to the runner's log, not the terminal).

It watches what the steps already write: their records in `<reports>/<day>/steps/` (status `running` at the
start, `ok`/`failed` at the end; components/runtime.py) and the runner's log file.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import TextIO

from ebr.report.steps import result_line

# a tqdm bar as it lands in a log: "desc:  40%|####      | 2/5 [00:03<00:04, 1.2it/s]"
_BAR = re.compile(r"([\w .-]{0,40}:\s*)?\d{1,3}%\|[^|\r\n]{0,60}\|\s*[\d.]+[kMG]?/[\d.]+[kMG]?\s*\[[^\]\r\n]{0,60}\]")


def last_bar(log_file: Path, tail_bytes: int = 16384) -> str:
    """The newest progress-bar fragment in the last `tail_bytes` of the log ('' when there is none)."""
    try:
        with open(log_file, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - tail_bytes))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    bars = [m.group(0) for m in _BAR.finditer(text)]
    return " ".join(bars[-1].split()) if bars else ""


class StepWatcher(threading.Thread):
    """Background thread printing step starts, finishes and (every `heartbeat_s`) the running steps' newest
    progress bar to `out`; `stop()` prints what is left and returns."""

    def __init__(self, steps_dir: Path, log_file: Path, out: TextIO, interval_s: float = 0.5,
                 heartbeat_s: float = 15.0):
        super().__init__(name="ebr-progress", daemon=True)
        self.steps_dir, self.log_file, self.out = Path(steps_dir), Path(log_file), out
        self.interval_s, self.heartbeat_s = interval_s, heartbeat_s
        self._seen: dict[str, str] = {}
        self._running_since: dict[str, float] = {}
        self._halt = threading.Event()
        self._t0 = time.perf_counter()
        self._last_beat = self._t0
        self._last_bar = ""

    def _print(self, text: str) -> None:
        self.out.write(f"[{time.perf_counter() - self._t0:7.1f}s] {text}\n")
        self.out.flush()

    def scan(self) -> None:
        """Print what changed since the last scan."""
        if not self.steps_dir.is_dir():
            return
        for path in sorted(self.steps_dir.glob("*.json")):
            try:
                rec = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # being replaced right now: read it next time
            name, status = rec.get("step", path.stem), rec.get("status", "")
            if self._seen.get(name) == status:
                continue
            self._seen[name] = status
            if status == "running":
                self._running_since[name] = time.perf_counter()
                self._print(f"start  {name}")
            else:
                self._running_since.pop(name, None)
                word = "done  " if status == "ok" else "FAILED"
                self._print(f"{word} {name} ({rec.get('wall_s', 0):.1f} s) {result_line(rec)}".rstrip())
        now = time.perf_counter()
        if self._running_since and now - self._last_beat >= self.heartbeat_s:
            self._last_beat = now
            bar = last_bar(self.log_file)
            running = ", ".join(f"{n} {now - t:.0f} s" for n, t in sorted(self._running_since.items()))
            self._print(f"...    {running}{'  ' + bar if bar and bar != self._last_bar else ''}")
            self._last_bar = bar or self._last_bar

    def run(self) -> None:
        while not self._halt.wait(self.interval_s):
            self.scan()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)
        self.scan()
