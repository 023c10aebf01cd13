"""Engine > "Connect to a remote engine…": paste a connection string, checked at once, stored, used from then on.

The check (a health and a token call over the pinned TLS connection) runs off the GUI thread; every failure is
one sentence under the field (uprez_client.remote_choice says which), and the pasted text stays there to fix. On
success the choice is stored as a 0600 file in the config folder (remote_choice.save), never in desktop.json.
"""

from __future__ import annotations

from typing import Any

from PyQt6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QLineEdit, QVBoxLayout, QWidget

from plugin.uprez_client import remote_choice
from ui.background import run_in_background

APP = "window"
TITLE = "Connect to a remote engine"
INTRO = ("Paste the connection string the engine's owner gave you: one line starting with uprez://, printed by "
         "`uprez tokens add NAME` on the machine that runs `uprez serve --remote`.")
ERROR_STYLE = "color: #b3261e;"


class ConnectDialog(QDialog):
    """Accepted once the engine answered and the choice is stored; `connection` and `health` then hold it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(TITLE)
        self.setMinimumWidth(540)
        self.connection: Any = None
        self.health: dict[str, Any] = {}
        intro = QLabel(INTRO)
        intro.setWordWrap(True)
        self.field = QLineEdit()
        self.field.setPlaceholderText("uprez://TOKEN@HOST:PORT/?sha256=…")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        buttons = QDialogButtonBox()
        self.connect_button = buttons.addButton("Connect", QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_button = buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.connect_button.clicked.connect(self.check)
        self.cancel_button.clicked.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.field)
        layout.addWidget(self.status)
        layout.addWidget(buttons)

    def check(self) -> None:
        self.connect_button.setEnabled(False)
        self.status.setStyleSheet("")
        self.status.setText("Checking the engine…")
        text = self.field.text()
        run_in_background(lambda: remote_choice.check(text), self._connected, self._refused)

    def _refused(self, exc: BaseException) -> None:
        self.connect_button.setEnabled(True)
        self.status.setStyleSheet(ERROR_STYLE)
        message = str(exc) if isinstance(exc, remote_choice.RemoteProblem) else f"{type(exc).__name__}: {exc}"
        self.status.setText(message)

    def _connected(self, outcome: tuple[Any, dict[str, Any]]) -> None:
        self.connect_button.setEnabled(True)
        connection, health = outcome
        try:
            remote_choice.save(APP, connection)
        except OSError as exc:
            self._refused(OSError(f"the engine answered, but the choice could not be saved ({exc.strerror or exc})"))
            return
        self.connection, self.health = connection, health
        self.status.setText(f"Connected to {remote_choice.label(connection)}.")
        self.accept()
