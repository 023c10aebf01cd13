"""One import point for Qt: Krita 5 bundles PyQt5, Krita 6 PyQt6; the bridge code names neither.

The binding Krita already loaded wins (importing the other one into Krita would crash it); outside
Krita, UPREZ_QT_API=pyqt5|pyqt6 chooses, else PyQt6 then PyQt5.
"""

from __future__ import annotations

import os
import sys


def _choose() -> str:
    for name in ("PyQt6", "PyQt5"):
        if name + ".QtCore" in sys.modules:
            return name
    wanted = os.environ.get("UPREZ_QT_API", "").lower()
    if wanted in ("pyqt5", "pyqt6"):
        return "PyQt" + wanted[-1]
    try:
        import PyQt6.QtCore  # noqa: F401
        return "PyQt6"
    except ImportError:
        return "PyQt5"


API = _choose()

if API == "PyQt6":
    from PyQt6 import QtCore, QtGui, QtWidgets
    from PyQt6.QtGui import QAction
else:
    from PyQt5 import QtCore, QtGui, QtWidgets  # type: ignore[no-redef]
    from PyQt5.QtWidgets import QAction  # type: ignore[no-redef]

QT_MAJOR = 6 if API == "PyQt6" else 5
Qt = QtCore.Qt
QObject = QtCore.QObject
QTimer = QtCore.QTimer
Signal = QtCore.pyqtSignal
QByteArray = QtCore.QByteArray
QImage = QtGui.QImage
QPixmap = QtGui.QPixmap
QApplication = QtWidgets.QApplication

# Enums moved into scoped classes in PyQt6; PyQt5 has both spellings, so the scoped ones work everywhere
# except where PyQt5 lacks the class, which these lines cover.
AlignCenter = Qt.AlignmentFlag.AlignCenter
KeepAspectRatio = Qt.AspectRatioMode.KeepAspectRatio
SmoothTransformation = Qt.TransformationMode.SmoothTransformation
NonModal = Qt.WindowModality.NonModal
WA_DeleteOnClose = Qt.WidgetAttribute.WA_DeleteOnClose
DialogButton = QtWidgets.QDialogButtonBox.StandardButton
SizeFixed = QtWidgets.QSizePolicy.Policy.Fixed
SizeExpanding = QtWidgets.QSizePolicy.Policy.Expanding


def exec_dialog(dialog: QtWidgets.QDialog) -> int:
    """`exec()` in PyQt6, `exec_()` in PyQt5 (where `exec` was a keyword once)."""
    run = getattr(dialog, "exec", None) or dialog.exec_
    return run()


def process_events() -> None:
    QApplication.processEvents()


__all__ = [
    "API", "QT_MAJOR", "AlignCenter", "DialogButton", "KeepAspectRatio", "NonModal", "QAction", "QApplication",
    "QByteArray", "QImage", "QObject", "QPixmap", "QTimer", "Qt", "QtCore", "QtGui", "QtWidgets", "Signal",
    "SizeExpanding", "SizeFixed", "SmoothTransformation", "WA_DeleteOnClose", "exec_dialog", "process_events",
]
