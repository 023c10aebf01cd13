"""The settings panel: scale, preset, model, seed (with a dice), prompt, and the advanced values folded away."""

from __future__ import annotations

import random
from typing import Any

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from plugin.uprez_client.options import (
    LORA_HINT,
    MEMORY_ITEMS,
    PRESET_HINTS,
    PRESETS,
    SCALES,
    choice_key,
    model_choices,
    parse_scale,
    split_choice,
)
from ui.settings_store import DesktopSettings

AUTO = "model's default"
SEED_MAX = 2**31 - 1  # what a spin box holds; the engine takes more, but nobody types those


def scale_label(scale: float) -> str:
    return f"{scale:g}×"


class SettingsPanel(QWidget):
    """Edits a DesktopSettings; `changed` whenever a value does."""

    changed = pyqtSignal()
    refresh_models = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.scale = QComboBox()
        self.scale.setEditable(True)
        self.scale.addItems([scale_label(s) for s in SCALES])
        self.scale.setToolTip("how much bigger: pick one or type a factor such as 2.5, 3x or 150%")
        self.preset = QComboBox()
        for index, name in enumerate(PRESETS):
            self.preset.addItem(name.capitalize(), name)
            self.preset.setItemData(index, PRESET_HINTS[name], Qt.ItemDataRole.ToolTipRole)
        self.model = QComboBox()
        self.model.setToolTip("the models the engine can use (GET /v1/models)")
        self.model.setPlaceholderText("waiting for the engine…")
        self.model.setMinimumContentsLength(16)
        self.model.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.refresh = QToolButton()
        self.refresh.setText("↻")
        self.refresh.setToolTip("ask the engine for its models again (after `uprez models pull`, say)")
        self.refresh.clicked.connect(self.refresh_models.emit)
        self.seed = QSpinBox()
        self.seed.setRange(0, SEED_MAX)
        self.seed.setToolTip("same seed, settings and model give the same result")
        self.dice = QToolButton()
        self.dice.setText("⚄")  # a die face that common fonts (DejaVu) carry, unlike the emoji
        self.dice.setToolTip("a new random seed")
        self.dice.clicked.connect(self.roll_seed)
        self.prompt = QLineEdit()
        self.prompt.setPlaceholderText("optional: what the image shows")

        self.advanced_button = QToolButton()
        self.advanced_button.setText("Advanced")
        self.advanced_button.setCheckable(True)
        self.advanced_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_button.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_button.toggled.connect(self._fold)
        self.steps = QSpinBox()
        self.steps.setRange(0, 200)
        self.steps.setSpecialValueText(AUTO)
        self.steps.setToolTip("length of the model's full schedule; only its tail below the strength runs")
        self.strength = QDoubleSpinBox()
        self.strength.setRange(-0.05, 1.0)
        self.strength.setSingleStep(0.05)
        self.strength.setDecimals(2)
        self.strength.setSpecialValueText(AUTO)
        self.strength.setToolTip("noise level each stage starts from: 0 = plain Lanczos, higher = more new detail")
        self.guidance = QDoubleSpinBox()
        self.guidance.setRange(-0.5, 30.0)
        self.guidance.setSingleStep(0.5)
        self.guidance.setDecimals(1)
        self.guidance.setSpecialValueText(AUTO)
        self.guidance.setToolTip("FLUX-dev's distilled guidance (other models ignore it)")
        self.tile_size = QSpinBox()
        self.tile_size.setRange(0, 16384)
        self.tile_size.setSingleStep(64)
        self.tile_size.setSpecialValueText(AUTO)
        self.tile_size.setSuffix(" px")
        self.tile_size.setToolTip("side of the tiles large images are worked in; smaller = less memory")
        self.memory = QComboBox()
        for index, (label, value, hint) in enumerate(MEMORY_ITEMS):
            self.memory.addItem(label, value)
            self.memory.setItemData(index, hint, Qt.ItemDataRole.ToolTipRole)
        self.memory.setToolTip("where the model's weights live while it runs (the engine's --memory)")
        self.loras = QLineEdit()
        self.loras.setPlaceholderText("none")
        self.loras.setToolTip(LORA_HINT)
        self.live_preview = QCheckBox("Live preview")
        self.live_preview.setToolTip("small previews while it runs (each costs a little time)")

        self.advanced = QWidget()
        advanced_form = QFormLayout(self.advanced)
        advanced_form.setContentsMargins(12, 0, 0, 0)
        advanced_form.addRow("Steps", self.steps)
        advanced_form.addRow("Strength", self.strength)
        advanced_form.addRow("Guidance", self.guidance)
        advanced_form.addRow("Tile size", self.tile_size)
        advanced_form.addRow("GPU memory", self.memory)
        advanced_form.addRow("LoRA", self.loras)
        advanced_form.addRow("", self.live_preview)

        model_row = QHBoxLayout()
        model_row.setContentsMargins(0, 0, 0, 0)
        model_row.addWidget(self.model, 1)
        model_row.addWidget(self.refresh)
        seed_row = QHBoxLayout()
        seed_row.setContentsMargins(0, 0, 0, 0)
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(self.dice)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Scale", self.scale)
        form.addRow("Preset", self.preset)
        form.addRow("Upscale model", model_row)
        form.addRow("Seed", seed_row)
        form.addRow("Prompt", self.prompt)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(self.advanced_button)
        layout.addWidget(self.advanced)
        self._fold(False)

        self.preset.currentIndexChanged.connect(self._preset_hint)
        for signal in (self.scale.currentTextChanged, self.preset.currentIndexChanged, self.model.currentIndexChanged,
                       self.seed.valueChanged, self.prompt.textChanged, self.steps.valueChanged,
                       self.strength.valueChanged, self.guidance.valueChanged, self.tile_size.valueChanged,
                       self.live_preview.toggled, self.advanced_button.toggled, self.memory.currentIndexChanged,
                       self.loras.textChanged):
            signal.connect(lambda *_: self.changed.emit())

    # -- values ---------------------------------------------------------------------------------------
    def set_settings(self, settings: DesktopSettings) -> None:
        self.scale.setCurrentText(scale_label(settings.scale))
        self.preset.setCurrentIndex(max(0, PRESETS.index(settings.preset) if settings.preset in PRESETS else 1))
        self._select_model(choice_key(settings.model, settings.upsampler) or None)
        self.seed.setValue(min(max(0, settings.seed), SEED_MAX))
        self.prompt.setText(settings.prompt)
        self.steps.setValue(settings.steps or 0)
        self.strength.setValue(self.strength.minimum() if settings.strength is None else settings.strength)
        self.guidance.setValue(self.guidance.minimum() if settings.guidance is None else settings.guidance)
        self.tile_size.setValue(settings.tile_size or 0)
        self.memory.setCurrentIndex(max(0, self.memory.findData(settings.memory)))
        self.loras.setText(settings.loras)
        self.live_preview.setChecked(settings.live_preview)
        self.advanced_button.setChecked(settings.advanced_open)
        self._preset_hint()

    def update_settings(self, settings: DesktopSettings) -> None:
        """Copy the panel's values into `settings`; raises ValueError for a scale nobody can use."""
        settings.scale = parse_scale(self.scale.currentText())
        settings.preset = self.preset.currentData() or "balanced"
        settings.model, settings.upsampler = split_choice(self.model.currentData())
        settings.seed = self.seed.value()
        settings.prompt = self.prompt.text()
        settings.steps = self.steps.value() or None
        settings.strength = None if self.strength.value() < 0 else self.strength.value()
        settings.guidance = None if self.guidance.value() < 0 else self.guidance.value()
        settings.tile_size = self.tile_size.value() if self.tile_size.value() >= 64 else None
        settings.memory = self.memory.currentData()
        settings.loras = self.loras.text().strip()
        settings.live_preview = self.live_preview.isChecked()
        settings.advanced_open = self.advanced_button.isChecked()

    def set_models(self, listing: dict[str, Any], wanted: str | None = None) -> None:
        """Fill the model list from GET /v1/models, keeping `wanted` (default: the current choice) selected."""
        wanted = self.model.currentData() if wanted is None and self.model.count() else wanted
        self.model.blockSignals(True)
        self.model.clear()
        self.model.addItem(f"Engine default ({listing.get('default') or 'builtin'})", None)
        # The built-in flow model, the big flow models, SR models on their own, and "SR model, then refine with".
        for label, key in model_choices(listing):
            self.model.addItem(label, key)
            self.model.setItemData(self.model.count() - 1, key.replace("\t", " → "), Qt.ItemDataRole.ToolTipRole)
        self.model.blockSignals(False)
        self._select_model(wanted)

    def _select_model(self, wanted: str | None) -> None:
        index = self.model.findData(wanted)
        if index < 0 and wanted:
            # Remembered from last time but not listed now: keep it, so the engine's message says why.
            self.model.addItem(f"{wanted.replace(chr(9), ' → ')} — not listed by the engine", wanted)
            index = self.model.count() - 1
        self.model.setCurrentIndex(max(0, index))

    def roll_seed(self) -> None:
        self.seed.setValue(random.randint(0, SEED_MAX))

    def _fold(self, open_: bool) -> None:
        self.advanced.setVisible(open_)
        self.advanced_button.setArrowType(Qt.ArrowType.DownArrow if open_ else Qt.ArrowType.RightArrow)

    def _preset_hint(self) -> None:
        name = self.preset.currentData()
        self.preset.setToolTip(PRESET_HINTS.get(name, ""))
