"""Persistent, section-based run report (state in ``report.json``, rendered to ``report.html``)."""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .html import _MIME, render_html

__all__ = ["Report", "render", "REPORT_JSON", "REPORT_HTML", "FIGURE_DIR"]

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
FIGURE_DIR = "report_files"
_FORMAT = "atebm-report"
_VERSION = 1
_KINDS = ("text", "table", "image", "curves")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def _plain(value: Any) -> Any:
    """JSON-safe copy: tensors/numpy scalars become Python numbers, non-finite floats become strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if hasattr(value, "item"):
        return _plain(value.item())
    return str(value)


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key.strip():
        raise ValueError(f"a report section needs a non-empty string key, got {key!r}")
    return key


@contextlib.contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    """Serialises read-merge-write of ``report.json`` between processes writing to the same run folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".report.lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read_state(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a readable report file ({err}); move it away to start a new report") from err
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise ValueError(f"{path} is not an atebm report (no 'format': '{_FORMAT}' entry)")
    if not isinstance(state.get("sections"), list):
        raise ValueError(f"{path} has no 'sections' list")
    return state


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class Report:
    """A run's report: an ordered set of sections, each identified by a key.

    Section kinds: ``text`` (paragraphs or preformatted text), ``table`` (columns, rows, and the protocol that
    produced the numbers), ``image`` (a PNG/JPEG/GIF file inside the run folder, embedded when rendered) and
    ``curves`` (a training history rendered to a plot of loss, AUC(p_data vs perturbed p_0), AUC(p_data vs
    clean p_0) and K against the step). Adding a section with an existing key replaces it where it stands.
    Use :meth:`open` to load or start a report and :meth:`save` to write ``report.json`` and ``report.html``.
    """

    def __init__(self, run_dir: str | os.PathLike, title: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.title = title or self.run_dir.resolve().name
        self.created = _now()
        self.sections: dict[str, dict[str, Any]] = {}
        self._changed: list[str] = []
        self._removed: set[str] = set()
        self._title_set = title is not None

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def open(cls, run_dir: str | os.PathLike, title: str | None = None) -> Report:
        """Loads ``run_dir/report.json`` if present (keeping its sections), else starts an empty report.
        ``title`` replaces the stored title when given."""
        report = cls(run_dir, title)
        state = _read_state(report.run_dir / REPORT_JSON)
        if state is not None:
            report.created = state.get("created", report.created)
            if title is None:
                report.title = state.get("title") or report.title
            for section in state["sections"]:
                report.sections[section["key"]] = section
        return report

    @property
    def path(self) -> Path:
        """Where :meth:`save` writes the HTML."""
        return self.run_dir / REPORT_HTML

    def keys(self) -> list[str]:
        return list(self.sections)

    def __contains__(self, key: str) -> bool:
        return key in self.sections

    def __len__(self) -> int:
        return len(self.sections)

    # ------------------------------------------------------------------------------------------ adding
    def _put(self, key: str, section: dict[str, Any]) -> None:
        key = _check_key(key)
        section = {"key": key, **section, "updated": _now()}
        self.sections[key] = _plain(section)
        self._removed.discard(key)
        if key in self._changed:
            self._changed.remove(key)
        self._changed.append(key)

    def remove(self, key: str) -> None:
        """Drops a section (no error if absent)."""
        self.sections.pop(key, None)
        if key in self._changed:
            self._changed.remove(key)
        self._removed.add(key)

    def add_text(self, key: str, heading: str, text: str, *, preformatted: bool = False) -> None:
        """A text section. Blank lines separate paragraphs; ``preformatted=True`` keeps the layout verbatim
        (terminal tables, logs)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        self._put(key, {"kind": "text", "heading": str(heading), "text": text, "preformatted": bool(preformatted)})

    def add_table(self, key: str, heading: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                  protocol: Mapping[str, Any] | None = None, note: str | None = None) -> None:
        """A table; every row must have one cell per column. ``protocol`` (how the numbers were obtained:
        samples, eps, steps, attackers, seeds, network, ...) is printed under the table, as is ``note``."""
        columns = [str(c) for c in columns]
        if not columns:
            raise ValueError("a table needs at least one column")
        rows = [list(r) for r in rows]
        for i, row in enumerate(rows):
            if len(row) != len(columns):
                raise ValueError(f"table {key!r}: row {i} has {len(row)} cells but there are {len(columns)} columns")
        self._put(key, {"kind": "table", "heading": str(heading), "columns": columns, "rows": rows,
                        "protocol": dict(protocol) if protocol else None, "note": note})

    def add_image(self, key: str, heading: str, path: str | os.PathLike, caption: str | None = None) -> None:
        """An image file, given relative to the run folder (``"samples.png"``), or as an absolute path inside
        it. It is embedded into the HTML at render time, so it must stay in the run folder."""
        rel = self._relative(path)
        full = self.run_dir / rel
        if not full.is_file():
            raise FileNotFoundError(f"report image not found: {full}")
        if full.suffix.lower() not in _MIME:
            raise ValueError(f"report images must be one of {sorted(_MIME)}, got {full.name}")
        self._put(key, {"kind": "image", "heading": str(heading), "path": rel, "caption": caption})

    def add_figure(self, key: str, heading: str, figure: Any, caption: str | None = None, dpi: int = 110) -> Path:
        """Saves a matplotlib figure as ``report_files/<key>.png`` in the run folder, closes it, and adds it as
        an image section. Returns the PNG path."""
        import matplotlib.pyplot as plt

        name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in _check_key(key)) + ".png"
        path = self.run_dir / FIGURE_DIR / name
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=dpi, bbox_inches="tight")
        plt.close(figure)
        self.add_image(key, heading, Path(FIGURE_DIR) / name, caption)
        return path

    def add_curves(self, key: str, heading: str, history: Sequence[Mapping[str, Any]], caption: str | None = None,
                   events: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Training curves from a trainer history (list of log records with ``step`` and any of ``loss``,
        ``auc_adv``, ``auc_clean``, ``k``, ``r1``, ``perturbation_l2``, ``score_data``, ``score_adv``). Rendered
        to an embedded PNG. ``events`` (dicts with ``step`` and ``kind``, e.g. from the failure monitor) are
        drawn as vertical lines."""
        if not history:
            raise ValueError(f"curves {key!r}: the history is empty")
        keep = ("step", "k", "epoch", "loss", "r1", "auc_adv", "auc_clean", "score_data", "score_adv",
                "perturbation_l2", "elapsed_s")
        records = []
        for i, record in enumerate(history):
            if "step" not in record:
                raise ValueError(f"curves {key!r}: history record {i} has no 'step'")
            records.append({k: record[k] for k in keep if k in record})
        marks = [{"step": e["step"], "kind": str(e.get("kind", "event"))} for e in (events or []) if "step" in e]
        self._put(key, {"kind": "curves", "heading": str(heading), "history": records, "caption": caption,
                        "events": marks})

    def _relative(self, path: str | os.PathLike) -> str:
        p = Path(path)
        if p.is_absolute():
            try:
                p = p.resolve().relative_to(self.run_dir.resolve())
            except ValueError as err:
                raise ValueError(f"report image {path} is outside the run folder {self.run_dir}; copy it there"
                                 ) from err
        return p.as_posix()

    # ------------------------------------------------------------------------------------------ saving
    def to_state(self) -> dict[str, Any]:
        return {"format": _FORMAT, "version": _VERSION, "title": self.title, "created": self.created,
                "updated": _now(), "sections": list(self.sections.values())}

    def save(self) -> Path:
        """Writes ``report.json`` and ``report.html``; returns the HTML path.

        Sections added by another process since this report was opened are kept: under a file lock the stored
        state is re-read and this report's additions and removals are applied on top of it.
        """
        with _locked(self.run_dir):
            stored = _read_state(self.run_dir / REPORT_JSON)
            if stored is not None:
                merged = {s["key"]: s for s in stored["sections"]}
                for key in self._removed:
                    merged.pop(key, None)
                for key in self._changed:
                    if key in self.sections:
                        merged[key] = self.sections[key]
                self.sections = merged
                self.created = stored.get("created", self.created)
                if not self._title_set:
                    self.title = stored.get("title") or self.title
            state = self.to_state()
            _atomic_write(self.run_dir / REPORT_JSON, json.dumps(state, indent=1))
            self._changed, self._removed = [], set()
            _atomic_write(self.path, render_html(state, self.run_dir))
        return self.path


def render(run_dir: str | os.PathLike) -> Path:
    """Re-renders ``run_dir/report.html`` from ``run_dir/report.json``; returns the HTML path."""
    run_dir = Path(run_dir)
    if _read_state(run_dir / REPORT_JSON) is None:
        raise FileNotFoundError(f"no report in {run_dir} (missing {REPORT_JSON})")
    return Report.open(run_dir).save()
