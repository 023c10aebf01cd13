"""The message strip above the image: what went wrong and what to do, with Retry where retrying can help."""

from __future__ import annotations

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from ui.messages import Advice

STYLES = {
    "error": "QFrame#banner { background: #fde2e1; border: 1px solid #d9534f; border-radius: 4px; }"
             " QLabel { color: #5a1513; }",
    "info": "QFrame#banner { background: #e4eefb; border: 1px solid #5b8bd9; border-radius: 4px; }"
            " QLabel { color: #14305a; }",
}


class Banner(QFrame):
    """Hidden until `show_error` or `show_info`; Dismiss hides it, Retry emits `retry`."""

    retry = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.retry_button = QPushButton("Retry")
        self.retry_button.clicked.connect(self.retry.emit)
        self.dismiss_button = QPushButton("Dismiss")
        self.dismiss_button.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.retry_button)
        layout.addWidget(self.dismiss_button)
        self.kind = ""
        self.hide()

    def show_error(self, advice: Advice) -> None:
        self._show("error", advice.text, advice.retry)

    def show_info(self, text: str) -> None:
        self._show("info", text, False)

    def _show(self, kind: str, text: str, retry: bool) -> None:
        self.kind = kind
        self.setStyleSheet(STYLES[kind])
        self.label.setText(text)
        self.retry_button.setVisible(retry)
        self.show()

    def text(self) -> str:
        return "" if self.isHidden() else self.label.text()
