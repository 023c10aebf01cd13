"""The main window: wires the canvas, settings, job runner, compare view and queue to the engine link."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PyQt6.QtCore import QSize, Qt, QUrl
from PyQt6.QtGui import QAction, QActionGroup, QDragEnterEvent, QDropEvent, QImage, QKeySequence
from PyQt6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from plugin.uprez_client import Client, EngineNotRunning, JobEvent, config_dir, remote_choice, status_text
from plugin.uprez_client.idle import IDLE_STOPPED, idle_note, is_stopping
from plugin.uprez_client.regions import scaled_size
from ui.background import run_in_background
from ui.banner import Banner
from ui.canvas import Canvas
from ui.compare import CompareView
from ui.engine_link import REMOTE_APP, EngineLink
from ui.imageio import (
    OPEN_FILTER,
    SAVE_FORMATS,
    BadImage,
    Picture,
    from_qimage,
    load_file,
    save_file,
    to_8bit,
    to_qimage,
)
from ui.jobs import JobRunner
from ui.messages import Advice, explain
from ui.queue_panel import QueuePanel
from ui.remote_dialog import ConnectDialog
from ui.settings_panel import SettingsPanel
from ui.settings_store import DesktopSettings, load_settings, save_settings

IMAGE_TAB, COMPARE_TAB = 0, 1
BUSY_TEXT = "An upscale is running: wait for it, or press Cancel, before opening another image."


@dataclass(frozen=True)
class RunSource:
    """What a job ran on, kept with its result: the compare view and the save name use this, not what is open."""

    picture: Picture
    path: Path | None
    scale: float
    before: QImage  # the picture as a QImage, converted once (it is redrawn with every preview)
    out_size: QSize


def suggested_name(folder: Path, stem: str, scale: float, suffix: str = ".png") -> Path:
    """'photo-2x.png' in `folder`, or 'photo-2x-2.png' and so on when that exists: a fresh name by default."""
    base = f"{stem}-{scale:g}x"
    candidate = folder / f"{base}{suffix}"
    counter = 2
    while candidate.exists():
        candidate = folder / f"{base}-{counter}{suffix}"
        counter += 1
    return candidate


def _handed_off(path: Path) -> bool:
    """True for a file an editor's "Open in Uprez window" wrote (uprez_client.handoff)."""
    try:
        return path.resolve().parent == (Path(config_dir()) / "handoff").resolve()
    except OSError:
        return False


class MainWindow(QMainWindow):
    """Open an image, mark a region, upscale through the engine, compare, save."""

    def __init__(self, link: EngineLink | None = None, settings: DesktopSettings | None = None) -> None:
        super().__init__()
        self.setWindowTitle("Uprez")
        self.setAcceptDrops(True)
        self.settings = settings or load_settings()
        self.link = link or EngineLink(parent=self)
        self.runner = JobRunner(self)
        self.picture: Picture | None = None
        self.source_path: Path | None = None
        self.result: Picture | None = None
        self.result_source: RunSource | None = None  # what `result` was made from
        self.run_source: RunSource | None = None  # what the running (or last) job was started on
        self.result_saved = True
        self.last_run_seconds: float | None = None
        self.engine_text = "Engine: not connected"  # the engine label without the idle note
        self.engine_on_demand = False  # the engine exits by itself when idle (it says so: exit_after)
        self.engine_asleep = False  # it did: Upscale starts it again
        self._run_when_connected = False
        self._build()
        self._wire()
        self.panel.set_settings(self.settings)
        self.canvas.brush_size = self.brush_size.value()
        self._update_actions()

    # -- layout ---------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.banner = Banner()
        self.canvas = Canvas()
        self.compare = CompareView()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.canvas, "Image")
        self.tabs.addTab(self.compare, "Compare")
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(6, 6, 6, 0)
        column.addWidget(self.banner)
        column.addWidget(self.tabs, 1)
        self.setCentralWidget(central)

        self.panel = SettingsPanel()
        self.region_label = QLabel()
        self.region_label.setWordWrap(True)
        self.run_button = QPushButton("Upscale")
        self.run_button.setDefault(True)
        self.run_button.setMinimumHeight(34)
        self.cancel_button = QPushButton("Cancel")
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.progress.setFormat("%p %")
        self.status_label = QLabel("Open an image to begin.")
        self.status_label.setWordWrap(True)
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.addWidget(self.panel)
        side_layout.addSpacing(8)
        side_layout.addWidget(self.region_label)
        side_layout.addWidget(self.run_button)
        side_layout.addWidget(self.cancel_button)
        side_layout.addWidget(self.progress)
        side_layout.addWidget(self.status_label)
        side_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(side)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(300)
        settings_dock = QDockWidget("Settings", self)
        settings_dock.setObjectName("settings-dock")
        settings_dock.setWidget(scroll)
        settings_dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, settings_dock)

        self.queue = QueuePanel()
        queue_dock = QDockWidget("Engine queue", self)
        queue_dock.setObjectName("queue-dock")
        queue_dock.setWidget(self.queue)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, queue_dock)
        self.resizeDocks([queue_dock], [140], Qt.Orientation.Vertical)

        self.engine_label = QLabel("Engine: not connected")
        self.statusBar().addPermanentWidget(self.engine_label)
        self._build_toolbar()

    def _build_toolbar(self) -> None:
        bar = self.addToolBar("Main")
        bar.setObjectName("main-toolbar")
        bar.setMovable(False)
        self.open_action = QAction("Open…", self, shortcut=QKeySequence.StandardKey.Open, triggered=self.open_dialog)
        self.paste_action = QAction("Paste", self, shortcut=QKeySequence.StandardKey.Paste, triggered=self.paste)
        self.save_action = QAction("Save…", self, shortcut=QKeySequence.StandardKey.Save, triggered=self.save_dialog)
        self.copy_action = QAction("Copy result", self, shortcut=QKeySequence.StandardKey.Copy,
                                   triggered=self.copy_result)
        for action in (self.open_action, self.paste_action, self.save_action, self.copy_action):
            bar.addAction(action)
        bar.addSeparator()
        self.tool_actions: dict[str, QAction] = {}
        group = QActionGroup(self)
        for tool, text, tip in (("rect", "Rectangle", "drag a rectangle to upscale only that region"),
                                ("brush", "Brush", "paint the region with a soft brush"),
                                ("erase", "Erase", "take parts out of the region")):
            action = QAction(text, self, checkable=True, toolTip=tip)
            action.triggered.connect(lambda _checked=False, t=tool: self.canvas.set_tool(t))
            group.addAction(action)
            bar.addAction(action)
            self.tool_actions[tool] = action
        self.tool_actions["rect"].setChecked(True)
        self.clear_action = QAction("Clear region", self, triggered=self.canvas.clear_region,
                                    toolTip="no region: upscale the whole image")
        bar.addAction(self.clear_action)
        self.brush_size = QSpinBox(minimum=2, maximum=1000, value=self.settings.brush_size, suffix=" px",
                                   toolTip="brush diameter in image pixels")
        self.feather = QSpinBox(minimum=0, maximum=200, value=self.settings.feather, suffix=" px",
                                toolTip="soften the region's edge by this many image pixels")
        self._build_engine_menu()
        bar.addWidget(QLabel(" Brush "))
        bar.addWidget(self.brush_size)
        bar.addWidget(QLabel(" Feather "))
        bar.addWidget(self.feather)

    def _build_engine_menu(self) -> None:
        """Engine menu: connect to a remote engine (a pasted connection string), or back to the local one."""
        menu = self.menuBar().addMenu("&Engine")
        self.remote_action = QAction("Connect to a remote engine…", self, triggered=self.connect_remote,
                                     toolTip="use an engine on another machine: paste its connection string")
        self.local_action = QAction("Use the local engine", self, triggered=self.use_local_engine)
        menu.addAction(self.remote_action)
        menu.addAction(self.local_action)
        self.local_action.setEnabled(remote_choice.load(REMOTE_APP) is not None)

    def connect_remote(self) -> ConnectDialog:
        """Open the connect dialog (non-modal); once it is accepted, the window reconnects to that engine."""
        self.remote_dialog = ConnectDialog(self)
        self.remote_dialog.accepted.connect(self._engine_switched)
        self.remote_dialog.show()
        return self.remote_dialog

    def use_local_engine(self) -> None:
        remote_choice.forget(REMOTE_APP)
        self._engine_switched()

    def _engine_switched(self) -> None:
        self.local_action.setEnabled(remote_choice.load(REMOTE_APP) is not None)
        self.queue.set_client(None)
        self.link.client = None
        self.engine_asleep = False
        self.connect_engine()

    def _wire(self) -> None:
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.banner.retry.connect(self.connect_engine)
        self.brush_size.valueChanged.connect(lambda v: setattr(self.canvas, "brush_size", v))
        self.feather.valueChanged.connect(self.canvas.set_feather)
        self.feather.valueChanged.connect(self._show_region)  # the label names the soft edge's width
        self.canvas.set_feather(self.feather.value())
        self.canvas.region_changed.connect(self._show_region)
        self.link.status.connect(self._engine_status)
        self.link.connected.connect(self._engine_connected)
        self.link.failed.connect(self._engine_failed)
        self.runner.submitted.connect(lambda job_id: self.queue.own_ids.add(job_id))
        self.runner.progress.connect(self._on_progress)
        self.runner.note.connect(self.status_label.setText)
        self.runner.preview.connect(self._on_preview)
        self.runner.finished.connect(self._on_finished)
        self.runner.failed.connect(self._on_failed)
        self.runner.cancelled.connect(self._on_cancelled)
        self.queue.cancel_requested.connect(self.cancel_job)
        self.queue.engine_state.connect(self._engine_idle_state)
        self.queue.lost.connect(self._engine_lost)
        self.panel.refresh_models.connect(self.refresh_models)

    # -- engine ---------------------------------------------------------------------------------------
    @property
    def client(self) -> Client | None:
        return self.link.client

    def connect_engine(self) -> None:
        """Find the engine (or start one); the window is usable meanwhile."""
        if self.banner.kind == "error":
            self.banner.hide()
        self.link.connect_engine()

    def _engine_status(self, text: str) -> None:
        self.engine_label.setText(f"Engine: {text}")
        if text.startswith("starting"):
            self.banner.show_info("No engine was running, so Uprez is starting one (a few seconds)…")

    def _engine_connected(self, client: Client, health: dict[str, Any], models: dict[str, Any]) -> None:
        started = " (started by this window)" if self.link.started is not None else ""
        remote = remote_choice.load(REMOTE_APP) if remote_choice.is_remote(client) else None
        where = remote_choice.label(remote) if remote is not None else client.url
        self.engine_text = f"Engine: {where} · {health.get('device', '?')}{started}"
        self.engine_asleep = False
        self._engine_idle_state(health)
        if self.banner.kind == "info":
            self.banner.hide()
        self.panel.set_models(models, self.settings.model)
        self.queue.set_client(client)
        self._update_actions()
        if self._run_when_connected:  # Upscale was pressed while the engine slept
            self._run_when_connected = False
            self.run()

    def _engine_idle_state(self, state: dict[str, Any]) -> None:
        """The engine label, with "engine idle, model unloaded" while the engine has freed its model."""
        self.engine_on_demand = state.get("exit_after") is not None
        note = idle_note(state)
        self.engine_label.setText(f"{self.engine_text} · {note}" if note else self.engine_text)

    def _engine_lost(self, exc: BaseException) -> None:
        """A queue poll found no engine: one started on demand exits after idling, which is no error; the
        next Upscale starts it again. Anything else is left to the next request to explain."""
        if not self.engine_on_demand or not (isinstance(exc, EngineNotRunning) or is_stopping(exc)):
            return
        self.queue.set_client(None)
        self.link.client = None
        self.engine_asleep = True
        self.engine_text = f"Engine: {IDLE_STOPPED}"
        self.engine_label.setText(self.engine_text)
        self._update_actions()

    def refresh_models(self) -> None:
        client = self.client
        if client is not None:
            run_in_background(client.models, self.panel.set_models,
                              lambda exc: self.banner.show_error(explain(exc, "listing the models")))

    def _engine_failed(self, exc: BaseException) -> None:
        self._run_when_connected = False
        remote = remote_choice.load(REMOTE_APP)
        self.engine_text = "Engine: not connected" if remote is None else \
            f"Engine: {remote_choice.label(remote)} · not connected"
        self.engine_label.setText(self.engine_text)
        self.queue.set_client(None)
        if remote is not None:  # not "start it with uprez serve": it runs on another machine
            self.banner.show_error(Advice(f"The remote engine at {remote_choice.host_of(remote)} did not answer: "
                                          f"{getattr(exc, 'message', None) or exc}. Press Retry, connect again "
                                          "(Engine menu), or use the local engine.", retry=True))
        else:
            self.banner.show_error(explain(exc, "cannot reach the engine"))
        self._update_actions()

    # -- opening --------------------------------------------------------------------------------------
    # While a job runs, opening is refused (Open and Paste are disabled, drops are turned away): the job's
    # result belongs to the picture it was started on, and swapping that picture mid-run invites mix-ups.
    def _busy(self) -> bool:
        if self.runner.running:
            self.status_label.setText(BUSY_TEXT)
            return True
        return False

    def open_dialog(self) -> None:
        if self._busy():
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open an image", self.settings.last_folder, OPEN_FILTER)
        if path:
            self.open_file(path)

    def open_file(self, path: str | Path) -> bool:
        """Open an image file; a bad one leaves what was open untouched and says why."""
        if self._busy():
            return False
        path = Path(path)
        try:
            picture = load_file(path)
        except BadImage as exc:
            self.banner.show_error(explain(exc))
            return False
        if not self._set_picture(picture, path):
            return False
        if not _handed_off(path):  # a layer an editor sent: saving next to it (a cache folder) is no one's wish
            self.settings.last_folder = str(path.parent)
        return True

    def paste(self) -> bool:
        """An image (or an image file's path or URL) from the clipboard."""
        if self._busy():
            return False
        data = QApplication.clipboard().mimeData()
        if data is not None and data.hasUrls():
            local = [url.toLocalFile() for url in data.urls() if url.isLocalFile()]
            if local:
                return self.open_file(local[0])
        try:
            picture = from_qimage(QApplication.clipboard().image(), "pasted")
        except BadImage as exc:
            self.banner.show_error(explain(exc))
            return False
        return self._set_picture(picture, None)

    def _set_picture(self, picture: Picture, path: Path | None) -> bool:
        """Show a new picture; the old result goes with the old picture (after asking, if it is not saved)."""
        if self.result is not None and not self.result_saved and not self.ask(
                f"The result of {self.result.name} is not saved. Open {picture.name} anyway and discard it?"):
            self.status_label.setText(f"{picture.name} was not opened; the unsaved result is kept.")
            return False
        if self.banner.kind == "error":
            self.banner.hide()
        self.result, self.result_source, self.result_saved = None, None, True
        self.picture, self.source_path = picture, path
        self.canvas.set_picture(picture)
        assert self.canvas.image is not None
        self.compare.set_images(self.canvas.image, None, QSize(picture.width, picture.height))
        self.tabs.setCurrentIndex(IMAGE_TAB)
        self.status_label.setText(f"{picture.name}: {picture.describe()}")
        self.setWindowTitle(f"{picture.name} — Uprez")
        self._reset_progress()
        self._update_actions()
        return True

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        data = event.mimeData()
        if data is not None and (data.hasUrls() or data.hasImage()) and not self.runner.running:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        data = event.mimeData()
        if data is None or self._busy():
            return
        try:
            urls: list[QUrl] = [url for url in data.urls() if url.isLocalFile()]
            if urls:
                self.open_file(urls[0].toLocalFile())
            elif data.hasImage():
                image = data.imageData()
                if not isinstance(image, QImage) or image.isNull():
                    raise BadImage("the dropped item holds no image Uprez can read; drop an image or an image file")
                self._set_picture(from_qimage(image, "dropped"), None)
        except BadImage as exc:
            self.banner.show_error(explain(exc))
        except Exception as exc:  # an exception escaping a Qt event handler would end the whole app
            self.banner.show_error(explain(exc, "the dropped item could not be opened"))
        event.acceptProposedAction()

    # -- running --------------------------------------------------------------------------------------
    def out_size(self) -> QSize:
        if self.picture is None:
            return QSize()
        width, height = scaled_size(self.picture.width, self.picture.height, self.settings.scale)
        return QSize(width, height)

    def run(self) -> None:
        if self.picture is None or self.runner.running:
            return
        if self.client is None:
            if self.engine_asleep:  # it exited after idling: start it again, then run
                self._run_when_connected = True
                self.connect_engine()
            return
        try:
            self.panel.update_settings(self.settings)
            params = self.settings.job_params()
        except ValueError as exc:
            self.banner.show_error(explain(exc))
            return
        save_settings(self.settings)
        if self.banner.kind == "error":
            self.banner.hide()
        self._reset_progress()
        self.status_label.setText("Sending the image to the engine…")
        assert self.canvas.image is not None
        source = RunSource(self.picture, self.source_path, self.settings.scale, self.canvas.image, self.out_size())
        self.run_source = source
        self.compare.set_images(source.before, None, source.out_size)
        self.runner.start(self.client, self.picture, self.canvas.mask_bytes(), params)
        self._update_actions()

    def cancel(self) -> None:
        self.runner.cancel()
        self.status_label.setText("Cancelling…")

    def cancel_job(self, job_id: str) -> None:
        """The queue's Cancel: this window's job through the runner, anyone else's directly."""
        if job_id == self.runner.job_id and self.runner.running:
            self.cancel()
            return
        client = self.client
        if client is not None:
            run_in_background(lambda: client.cancel(job_id), lambda _: self.queue.poll(),
                              lambda exc: self.banner.show_error(explain(exc, "cancel")))

    def _reset_progress(self) -> None:
        self.progress.setValue(0)
        self.progress.setFormat("%p %")

    def _on_progress(self, event: JobEvent) -> None:
        self.progress.setValue(int(round((event.fraction or 0.0) * 100)))  # run() set the format
        self.status_label.setText(status_text(event))

    def _on_preview(self, image: QImage) -> None:
        source = self.run_source
        if source is not None:
            self.compare.set_images(source.before, image, source.out_size, "Live preview")
            if self.tabs.currentIndex() != COMPARE_TAB:
                self.tabs.setCurrentIndex(COMPARE_TAB)

    def _on_finished(self, result: Picture, seconds: float) -> None:
        self.result, self.result_saved, self.last_run_seconds = result, False, seconds
        self.result_source = self.run_source
        self.progress.setValue(100)
        self.progress.setFormat("%p % · done")
        self.setWindowTitle(f"{result.name} ({result.width}×{result.height}) — Uprez")
        self.status_label.setText(f"Done in {seconds:.1f} s: {result.describe()}. Save or copy it.")
        if self.result_source is not None:
            self.compare.set_images(self.result_source.before, to_qimage(result), QSize(result.width, result.height))
        self.tabs.setCurrentIndex(COMPARE_TAB)
        self.queue.poll()
        self._update_actions()

    def _on_failed(self, exc: BaseException) -> None:
        self.progress.setFormat("%p % · failed")
        self.status_label.setText("The upscale did not finish; your image and settings are kept.")
        self.banner.show_error(explain(exc))
        self._update_actions()

    def _on_cancelled(self) -> None:
        self.progress.setValue(0)
        self.progress.setFormat("cancelled")
        self.status_label.setText("Cancelled; nothing was changed.")
        self.queue.poll()
        self._update_actions()

    # -- saving ---------------------------------------------------------------------------------------
    def save_dialog(self) -> None:
        if self.result is None:
            return
        folder = Path(self.settings.last_folder) if self.settings.last_folder else Path.home()
        source = self.result_source
        stem = source.path.stem if source is not None and source.path is not None else self.result.name
        start = suggested_name(folder, stem, source.scale if source is not None else self.settings.scale)
        path, chosen = QFileDialog.getSaveFileName(
            self, "Save the result", str(start), ";;".join(SAVE_FORMATS),
            options=QFileDialog.Option.DontConfirmOverwrite)  # save_result_to asks, once
        if path:
            if not Path(path).suffix:
                path += SAVE_FORMATS.get(chosen, ".png")
            self.save_result_to(path)

    def save_result_to(self, path: str | Path) -> bool:
        """Save the result; asks before replacing a file and never replaces the opened original."""
        if self.result is None:
            return False
        path = Path(path)
        originals = {self.source_path, self.result_source.path if self.result_source is not None else None}
        if any(original is not None and path.resolve() == original.resolve() for original in originals):
            self.banner.show_error(explain(FileExistsError(
                f"{path.name} is the image you opened; Uprez never writes over it")))
            return False
        overwrite = path.exists()
        if overwrite and not self.ask(f"{path.name} already exists. Replace it?"):
            self.status_label.setText(f"Not saved: {path.name} was kept as it was.")
            return False
        try:
            save_file(self.result, path, overwrite=overwrite)
        except (BadImage, OSError) as exc:
            self.banner.show_error(explain(exc, "saving"))
            return False
        except Exception as exc:  # a library's own error type: the result must survive it, unsaved but still here
            self.banner.show_error(Advice(
                f"Saving {path.name} failed: {type(exc).__name__}: {exc}. The result is still here: save it in "
                "another format or folder, or use Copy result."))
            return False
        self.result_saved = True
        self.settings.last_folder = str(path.parent)
        depth = "16-bit" if self.result.depth == 16 and path.suffix.lower() in (".png", ".tif", ".tiff") else "8-bit"
        self.status_label.setText(f"Saved {path.name} ({self.result.width}×{self.result.height}, {depth}).")
        return True

    def copy_result(self) -> None:
        if self.result is not None:
            QApplication.clipboard().setImage(to_qimage(to_8bit(self.result)))
            self.status_label.setText("The result is on the clipboard.")

    def ask(self, question: str) -> bool:
        """Yes/No from the person at the screen (tests replace this with their answer)."""
        answer = QMessageBox.question(self, "Uprez", question)
        return answer == QMessageBox.StandardButton.Yes

    # -- state ----------------------------------------------------------------------------------------
    def _show_region(self) -> None:
        box = self.canvas.mask.bounding_box() if self.canvas.mask is not None else None  # cached between edits
        if self.picture is None:
            self.region_label.setText("")
        elif box is None:
            self.region_label.setText("Upscales the whole image. Draw a rectangle or paint to upscale a region.")
        else:
            self.region_label.setText(f"Upscales the region ({box[2]}×{box[3]} px, soft edge {self.feather.value()} "
                                      "px) with the model; the rest is enlarged plainly.")

    def _update_actions(self) -> None:
        running = self.runner.running
        ready = self.client is not None or self.engine_asleep
        self.run_button.setEnabled(self.picture is not None and ready and not running)
        self.run_button.setToolTip("" if ready else "waiting for the engine")
        self.cancel_button.setEnabled(running)
        self.open_action.setEnabled(not running)
        self.paste_action.setEnabled(not running)
        self.save_action.setEnabled(self.result is not None)
        self.copy_action.setEnabled(self.result is not None)
        self.panel.setEnabled(not running)
        self._show_region()

    def closeEvent(self, event: Any) -> None:
        if self.result is not None and not self.result_saved and not self.ask(
                "The result is not saved. Close anyway?"):
            event.ignore()
            return
        with contextlib.suppress(ValueError):  # a half-typed scale: keep the last good one
            self.panel.update_settings(self.settings)
        self.settings.brush_size, self.settings.feather = self.brush_size.value(), self.feather.value()
        save_settings(self.settings)
        self.queue.set_client(None)
        self.shutdown_jobs()
        event.accept()

    def shutdown_jobs(self) -> None:
        """Stop this window's job, and the engine only if this window started it; safe to call again."""
        own_jobs = self.queue.own_ids | self.runner.own_job_ids()
        self.runner.shutdown()
        self.link.shutdown(own_jobs)

    def show_unexpected(self, exc: BaseException) -> None:
        """A bug's exception in the banner (the app's exception hook sends it here); the window goes on."""
        self.banner.show_error(Advice(
            f"Something went wrong inside Uprez: {type(exc).__name__}: {exc}. Your image, result and settings "
            "are kept; save your result if you have one. Details are printed to the terminal (stderr)."))

