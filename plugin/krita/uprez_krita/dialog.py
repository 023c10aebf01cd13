"""The "Upscale with Uprez" dialog: choices, then progress with preview and Cancel, without blocking Krita.

Non-modal: a person can keep painting while the engine works. Closing the dialog leaves the job running;
its end is reported in the canvas (a floating message) if the dialog is hidden by then.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from . import document as doc_ops
from . import form, memory
from .client_import import options, remote_choice, uprez_client
from .job import UpscaleJob
from .plan import SOURCE_LABELS, TARGET_LABELS, TARGETS
from .qt import (
    AlignCenter,
    DialogButton,
    KeepAspectRatio,
    QImage,
    QObject,
    QPixmap,
    QtGui,
    QtWidgets,
    Signal,
    SmoothTransformation,
)

PREVIEW_SIDE = 256


class _ModelList(QObject):
    """Fetches the engine's model list off the GUI thread."""

    arrived = Signal(object)

    def fetch(self) -> None:
        def run() -> None:
            try:
                listing = remote_choice.client_for("krita", timeout=5.0).models()
            except (uprez_client.UprezClientError, ValueError, OSError):
                listing = {}
            # (label, key): the built-in flow model, big flow models, SR models, "SR model, then refine with".
            self.arrived.emit(options.model_choices(listing if isinstance(listing, dict) else {}))

        threading.Thread(target=run, name="uprez-models", daemon=True).start()


class UpscaleDialog(QtWidgets.QDialog):
    def __init__(self, document: Any = None, parent: Any = None,
                 active_document: Callable[[], Any] | None = None) -> None:
        """`active_document`, inside Krita, says which document is in front when Upscale is pressed."""
        super().__init__(parent)
        self.active_document = active_document
        self.setWindowTitle("Upscale with Uprez")
        self.setMinimumWidth(480)
        self.document = None  # set_document below shows this document's remembered choices
        self.job: UpscaleJob | None = None
        self._build()
        self._models = _ModelList()
        self._models.arrived.connect(self._set_models)
        self._models.fetch()
        self.set_document(document)

    # -- layout ---------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.scale = QtWidgets.QComboBox()
        self.scale.addItems(list(form.SCALE_CHOICES))
        self.scale.setCurrentText(form.DEFAULT_SCALE)
        self.custom_scale = QtWidgets.QLineEdit("2.5")
        self.custom_scale.setPlaceholderText("e.g. 2.5 or 250%")
        self.custom_scale.setVisible(False)
        self.scale.currentTextChanged.connect(lambda t: self.custom_scale.setVisible(t == form.SCALE_CHOICES[-1]))
        scale_row = QtWidgets.QHBoxLayout()
        scale_row.addWidget(self.scale, 1)
        scale_row.addWidget(self.custom_scale, 1)

        self.preset = QtWidgets.QComboBox()
        for i, name in enumerate(options.PRESETS):
            self.preset.addItem(name.capitalize(), name)
            self.preset.setItemData(i, options.PRESET_HINTS[name], _tooltip_role())
        self.preset.setCurrentIndex(options.PRESETS.index("balanced"))
        self.preset_hint = QtWidgets.QLabel(options.PRESET_HINTS["balanced"])
        self.preset_hint.setEnabled(False)  # greyed: a caption, not a control
        self.preset.currentIndexChanged.connect(
            lambda i: self.preset_hint.setText(options.PRESET_HINTS[options.PRESETS[i]]))

        self.model = QtWidgets.QComboBox()
        self.model.setEditable(True)
        self.model.addItem("")
        self.model.lineEdit().setPlaceholderText("engine default")

        self.memory = QtWidgets.QComboBox()
        for i, (label, value, hint) in enumerate(options.MEMORY_ITEMS):
            self.memory.addItem(label, value or "")
            self.memory.setItemData(i, hint, _tooltip_role())
        self.memory.setToolTip("where the model's weights live while it runs (the engine's --memory)")

        self.seed = QtWidgets.QSpinBox()
        self.seed.setRange(0, form.SEED_MAX)
        dice = QtWidgets.QToolButton()
        dice.setText("Random")
        dice.setToolTip("A new random seed")
        dice.clicked.connect(lambda: self.seed.setValue(form.random_seed()))
        seed_row = QtWidgets.QHBoxLayout()
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(dice)

        self.prompt = QtWidgets.QLineEdit()
        self.prompt.setPlaceholderText("optional: what the image shows")

        self.loras = QtWidgets.QLineEdit()
        self.loras.setPlaceholderText("none")
        self.loras.setToolTip(options.LORA_HINT)

        self.source = QtWidgets.QComboBox()
        for key, label in SOURCE_LABELS.items():
            self.source.addItem(label, key)
        self.target = QtWidgets.QComboBox()
        for key in TARGETS:
            self.target.addItem(TARGET_LABELS[key], key)
        self.selection_only = QtWidgets.QCheckBox("Selection only")
        self.selection_only.setToolTip("Send only the selected region with its soft edge; the new layer holds "
                                       "just that region")

        from .remote import EngineRow

        self.engine = EngineRow()
        self.engine.changed.connect(lambda: self._models.fetch())  # another engine, other models

        settings = QtWidgets.QFormLayout()
        settings.addRow("Engine", self.engine)
        settings.addRow("Scale", scale_row)
        settings.addRow("Preset", self.preset)
        settings.addRow("", self.preset_hint)
        settings.addRow("Upscale model", self.model)
        settings.addRow("GPU memory", self.memory)
        settings.addRow("Seed", seed_row)
        settings.addRow("Prompt", self.prompt)
        settings.addRow("LoRAs", self.loras)
        settings.addRow("Upscale", self.source)
        settings.addRow("Result", self.target)
        settings.addRow("", self.selection_only)

        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.status = QtWidgets.QLabel("")
        self.status.setWordWrap(True)
        self.preview = QtWidgets.QLabel()
        self.preview.setAlignment(AlignCenter)
        self.preview.setMinimumSize(PREVIEW_SIDE // 2, PREVIEW_SIDE // 2)
        self.preview.setVisible(False)

        self.buttons = QtWidgets.QDialogButtonBox()
        self.run_button = self.buttons.addButton("Upscale", QtWidgets.QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_button = self.buttons.addButton(DialogButton.Cancel)
        self.close_button = self.buttons.addButton(DialogButton.Close)
        self.cancel_button.setEnabled(False)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.hide)

        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(settings)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.preview)
        layout.addWidget(self.buttons)

    def _set_models(self, choices: list) -> None:
        current = self.model.currentText()
        for label, key in choices:
            if self.model.findData(key) < 0:
                self.model.addItem(label, key)
        self.model.setCurrentText(current)

    def _model_choice(self) -> str:
        """The chosen item's key (model, or SR model and the model refining it), or the text a person typed."""
        text = self.model.currentText()
        index = self.model.findText(text)
        key = self.model.itemData(index) if index > 0 else None
        return key if isinstance(key, str) and key else text

    # -- state ----------------------------------------------------------------------------------------
    def set_document(self, document: Any) -> None:
        same = document is not None and self.document is not None and document == self.document
        if not same and self.document is not None:
            memory.remember(self.document, self.choices())
        self.document = document
        has_selection = document is not None and doc_ops.selection_box(document) is not None
        self.selection_only.setEnabled(has_selection)
        if not same:
            remembered = memory.for_document(document)
            if remembered is not None:  # the choices last made for this document
                self.apply_choices(remembered)
            else:  # the last ones made anywhere; with a selection, upscaling just that is the likely wish
                self.apply_choices(memory.last()._replace(selection_only=has_selection))
        self.run_button.setEnabled(document is not None and self.job is None)
        if document is None:
            self.status.setText("Open an image to upscale.")

    def apply_choices(self, choices: form.Choices) -> None:
        """Show `choices` (remembered ones); a value the widgets cannot hold leaves that widget as it is."""
        if self.scale.findText(choices.scale) >= 0:
            self.scale.setCurrentText(choices.scale)
        self.custom_scale.setText(choices.custom_scale)
        _select_data(self.preset, choices.preset)
        index = self.model.findData(choices.model) if choices.model else 0
        if index >= 0:
            self.model.setCurrentIndex(index)
        else:
            self.model.setCurrentText(choices.model)
        _select_data(self.memory, choices.memory)
        self.seed.setValue(max(0, min(choices.seed, form.SEED_MAX)))
        self.prompt.setText(choices.prompt)
        self.loras.setText(choices.loras)
        _select_data(self.source, choices.source)
        _select_data(self.target, choices.target)
        self.selection_only.setChecked(choices.selection_only and self.selection_only.isEnabled())

    def hideEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        memory.remember(self.document, self.choices())  # closing the dialog keeps what was set for this document
        super().hideEvent(event)

    def choices(self) -> form.Choices:
        return form.Choices(
            scale=self.scale.currentText(), custom_scale=self.custom_scale.text(), preset=self.preset.currentData(),
            model=self._model_choice(), seed=self.seed.value(), prompt=self.prompt.text(),
            source=self.source.currentData(), target=self.target.currentData(),
            selection_only=self.selection_only.isChecked() and self.selection_only.isEnabled(),
            memory=self.memory.currentData() or "", loras=self.loras.text())

    def run(self) -> None:
        if self.active_document is not None:  # the person may have switched documents since the dialog opened
            self.set_document(self.active_document())
        memory.remember(self.document, self.choices())
        try:
            request = form.to_request(self.choices())
            source = doc_ops.read_source(self.document, request.scale, request.target, request.selection_only,
                                         source=request.source, params=request.params)
        except ValueError as exc:
            self._show_error(str(exc))
            return
        self.job = UpscaleJob(source, start_engine=True)
        self.job.event.connect(self._on_event)
        self.job.finished.connect(self._on_finished)
        self.progress.setValue(0)
        self.status.setText("Sending to the engine…")
        self.preview.clear()
        self.preview.setVisible(False)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.job.start()

    def cancel(self) -> None:
        if self.job is not None:
            self.status.setText("Cancelling…")
            self.job.cancel()
        else:
            self.hide()

    def _on_event(self, event: Any) -> None:
        """One uprez_client.JobEvent: the shared status line, the bar's fraction, a preview."""
        if event.preview:
            self._show_preview(event.preview)
        text = uprez_client.status_text(event)
        if text:
            self.status.setText(text)
        if event.fraction is not None:
            self.progress.setValue(int(1000 * event.fraction))

    def _show_preview(self, jpeg: bytes) -> None:
        image = QImage.fromData(jpeg)
        if image.isNull():
            return
        pixmap = QPixmap.fromImage(image).scaled(PREVIEW_SIDE, PREVIEW_SIDE, KeepAspectRatio, SmoothTransformation)
        self.preview.setPixmap(pixmap)
        self.preview.setVisible(True)

    def _on_finished(self, job: UpscaleJob) -> None:
        self.job = None
        self.cancel_button.setEnabled(False)
        self.run_button.setEnabled(self.document is not None)
        if job.state == "done":
            self.progress.setValue(1000)
            where = "a new document" if job.source.plan.placement.target == "new_document" else "a new layer"
            text = f"Done: the result is in {where}."
        elif job.state == "cancelled":
            self.progress.setValue(0)
            text = "Cancelled; the document is as it was."
        else:
            text = f"Failed: {job.message}. The document is as it was."
        self.status.setText(text)
        if not self.isVisible():
            _float_message(text)

    def _show_error(self, message: str) -> None:
        self.status.setText(message)
        QtWidgets.QMessageBox.warning(self, "Uprez", message)


def _select_data(combo: Any, value: Any) -> None:
    index = combo.findData(value)
    if index >= 0:
        combo.setCurrentIndex(index)


def _tooltip_role() -> Any:
    from .qt import Qt

    return Qt.ItemDataRole.ToolTipRole


def _float_message(text: str) -> None:
    try:
        from krita import Krita
    except ImportError:
        return
    window = Krita.instance().activeWindow()
    view = window.activeView() if window is not None else None
    if view is not None:
        view.showFloatingMessage(text if text.startswith("Uprez") else "Uprez: " + text, QtGui.QIcon(), 4000, 1)
