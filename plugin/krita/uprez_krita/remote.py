"""The dialog's engine row ("Engine: local" / "Engine: remote: HOST") and "Connect to a remote engine…".

The person pastes the connection string `uprez tokens add NAME` printed on the engine's machine; it is checked at
once (a health and a token call over the pinned TLS connection, on a worker thread so Krita keeps painting),
then stored by uprez_client.remote_choice (a 0600 file in the Uprez config folder, never in kritarc). Every
failure is one sentence under the field; the string stays there to fix.
"""

from __future__ import annotations

import threading
from typing import Any

from .client_import import remote_choice
from .qt import QObject, QtWidgets, Signal

APP = "krita"
TITLE = "Connect to a remote engine"
INTRO = ("Paste the connection string the engine's owner gave you: one line starting with uprez://, printed by "
         "`uprez tokens add NAME` on the machine that runs `uprez serve --remote`.")


class _Check(QObject):
    """remote_choice.check off the GUI thread; `done` carries (connection, health) or the RemoteProblem."""

    done = Signal(object)

    def start(self, text: str) -> None:
        def run() -> None:
            try:
                outcome: Any = remote_choice.check(text)
            except remote_choice.RemoteProblem as exc:
                outcome = exc
            except Exception as exc:  # noqa: BLE001 - a bug must still end the check, not leave it spinning
                outcome = remote_choice.RemoteProblem(f"The check failed: {type(exc).__name__}: {exc}.")
            self.done.emit(outcome)

        threading.Thread(target=run, name="uprez-remote-check", daemon=True).start()


class ConnectDialog(QtWidgets.QDialog):
    """Paste, Connect; accepted once the engine answered and the choice is stored (`connection`, `health`)."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(TITLE)
        self.setMinimumWidth(520)
        self.connection: Any = None
        self.health: dict = {}
        intro = QtWidgets.QLabel(INTRO)
        intro.setWordWrap(True)
        self.field = QtWidgets.QLineEdit()
        self.field.setPlaceholderText("uprez://TOKEN@HOST:PORT/?sha256=…")
        self.status = QtWidgets.QLabel("")
        self.status.setWordWrap(True)
        buttons = QtWidgets.QDialogButtonBox()
        self.connect_button = buttons.addButton("Connect", QtWidgets.QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_button = buttons.addButton(QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        self.connect_button.clicked.connect(self.check)
        self.cancel_button.clicked.connect(self.reject)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.field)
        layout.addWidget(self.status)
        layout.addWidget(buttons)
        self._check = _Check()
        self._check.done.connect(self._checked)

    def check(self) -> None:
        self.connect_button.setEnabled(False)
        self.status.setStyleSheet("")
        self.status.setText("Checking the engine…")
        self._check.start(self.field.text())

    def _checked(self, outcome: Any) -> None:
        self.connect_button.setEnabled(True)
        if isinstance(outcome, BaseException):
            self.status.setStyleSheet("color: #b3261e;")
            self.status.setText(str(outcome))
            return
        self.connection, self.health = outcome
        try:
            remote_choice.save(APP, self.connection)
        except OSError as exc:
            self.status.setStyleSheet("color: #b3261e;")
            self.status.setText(f"The engine answered, but the choice could not be saved ({exc.strerror or exc}).")
            return
        self.status.setText(f"Connected to {remote_choice.label(self.connection)}.")
        self.accept()


class EngineRow(QtWidgets.QWidget):
    """'Engine: local' or 'Engine: remote: HOST', with Connect… and Use the local engine; `changed` on a switch."""

    changed = Signal()

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.label = QtWidgets.QLabel()
        self.connect_button = QtWidgets.QPushButton("Connect to a remote engine…")
        self.local_button = QtWidgets.QPushButton("Use the local engine")
        self.connect_button.clicked.connect(self.open_connect)
        self.local_button.clicked.connect(self.use_local)
        # The label on its own line: "remote: a-long-host-name:8743" must not squeeze the buttons.
        column = QtWidgets.QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.label)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.connect_button)
        row.addWidget(self.local_button)
        row.addStretch(1)
        column.addLayout(row)
        self.dialog: ConnectDialog | None = None
        self.refresh()

    def refresh(self) -> None:
        connection = remote_choice.load(APP)
        self.label.setText(remote_choice.label(connection))
        self.label.setToolTip(connection.url if connection is not None else
                              "the engine on this computer, started when needed")
        self.local_button.setVisible(connection is not None)

    def open_connect(self) -> ConnectDialog:
        """Shows the dialog (non-modal: the check runs while Krita keeps working); returns it for tests."""
        self.dialog = ConnectDialog(self.window())
        self.dialog.accepted.connect(self._switched)
        self.dialog.show()
        return self.dialog

    def use_local(self) -> None:
        remote_choice.forget(APP)
        self._switched()

    def _switched(self) -> None:
        self.refresh()
        self.changed.emit()
