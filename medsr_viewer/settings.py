"""Persistent preferences (QSettings): last folder, recent files, model, scale, device, mode, what the
mouse wheel does, layout."""

from __future__ import annotations

import tempfile
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

ORGANISATION = "MedSR"
APPLICATION = "MedSR Viewer"
MAX_RECENT = 8


class Settings:
    """Typed access to the keys the viewer keeps between sessions."""

    def __init__(self, qsettings: QSettings | None = None):
        self.q = qsettings if qsettings is not None else QSettings(ORGANISATION, APPLICATION)

    @classmethod
    def at(cls, path: str | Path) -> Settings:
        """Settings kept in an INI file (tests, headless runs)."""
        return cls(QSettings(str(path), QSettings.Format.IniFormat))

    @classmethod
    def throwaway(cls) -> Settings:
        """Settings that do not touch the user's own (screenshots, benchmarks)."""
        folder = tempfile.mkdtemp(prefix="medsr-viewer-settings-")
        return cls.at(Path(folder) / "settings.ini")

    def _get(self, key: str, default, kind=str):
        value = self.q.value(key, default)
        try:
            return kind(value) if value is not None else default
        except (TypeError, ValueError):
            return default

    # --- simple values -------------------------------------------------------------------------
    @property
    def last_folder(self) -> str:
        return self._get("paths/last_folder", str(Path.home()))

    @last_folder.setter
    def last_folder(self, value: str) -> None:
        self.q.setValue("paths/last_folder", str(value))

    def recent(self) -> list[str]:
        value = self.q.value("paths/recent", [])
        if isinstance(value, str):
            value = [value] if value else []
        return [str(v) for v in (value or [])][:MAX_RECENT]

    def add_recent(self, path: str | Path) -> list[str]:
        path = str(Path(path))
        items = [path] + [p for p in self.recent() if p != path]
        self.q.setValue("paths/recent", items[:MAX_RECENT])
        parent = Path(path).parent if Path(path).is_file() else Path(path)
        self.last_folder = str(parent)
        return items[:MAX_RECENT]

    def clear_recent(self) -> None:
        self.q.setValue("paths/recent", [])

    def value(self, key: str, default, kind=str):
        return self._get(key, default, kind)

    def set(self, key: str, value) -> None:
        self.q.setValue(key, value)

    @property
    def wheel_zooms(self) -> bool:
        """The mouse wheel zooms (ctrl+wheel steps slices); False: the wheel steps slices."""
        return str(self.q.value("view/wheel_zooms", "true")).lower() == "true"

    @wheel_zooms.setter
    def wheel_zooms(self, on: bool) -> None:
        self.q.setValue("view/wheel_zooms", "true" if on else "false")

    # --- window layout -------------------------------------------------------------------------
    def geometry(self) -> QByteArray | None:
        v = self.q.value("window/geometry")
        return v if isinstance(v, QByteArray) and not v.isEmpty() else None

    def window_state(self) -> QByteArray | None:
        v = self.q.value("window/state")
        return v if isinstance(v, QByteArray) and not v.isEmpty() else None

    def splitter(self) -> QByteArray | None:
        v = self.q.value("window/splitter")
        return v if isinstance(v, QByteArray) and not v.isEmpty() else None

    def save_layout(self, geometry: QByteArray, state: QByteArray, splitter: QByteArray) -> None:
        self.q.setValue("window/geometry", geometry)
        self.q.setValue("window/state", state)
        self.q.setValue("window/splitter", splitter)

    def sync(self) -> None:
        self.q.sync()
