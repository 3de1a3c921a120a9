"""The main window: gallery, image view with overlay, and the task panels."""

from __future__ import annotations

import html
import time
from pathlib import Path

from PySide6.QtCore import QEvent, Qt, QUrl
from PySide6.QtGui import QAction, QDesktopServices, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from mmstudio import __version__
from mmstudio.errors import MMStudioError
from mmstudio.gui.panels.ask_panel import AskPanel
from mmstudio.gui.panels.caption_panel import CaptionPanel
from mmstudio.gui.panels.duplicates_panel import DuplicatesPanel
from mmstudio.gui.panels.explore_panel import ExplorePanel
from mmstudio.gui.panels.match_panel import MatchPanel
from mmstudio.gui.panels.search_panel import SearchPanel
from mmstudio.gui.panels.train_panel import TrainPanel
from mmstudio.gui.qt_clipboard import qimage_to_pil
from mmstudio.gui.qt_compare import CompareDialog
from mmstudio.gui.qt_gallery import Gallery
from mmstudio.gui.qt_image_view import ImageView
from mmstudio.gui.qt_model_dialog import ModelDialog
from mmstudio.gui.qt_overlay_controls import OverlayControls
from mmstudio.gui.qt_settings import Settings
from mmstudio.gui.qt_world_banner import WorldBanner
from mmstudio.gui.worker import InferenceClient, OpenTickets, Ticket
from mmstudio.models.base import LoadOptions, Task
from mmstudio.models.loading import BUILTIN_PREFIX, builtin_name
from mmstudio.overlay import blend
from mmstudio.requests import LoadModelRequest, ModelOutcome
from mmstudio.resources import readme_path, samples_dir
from mmstudio.teach import add_correction

WELCOME = """
<div style='text-align:center; color:#555'>
<p style='font-size:22pt'>Drop images here</p>
<p style='font-size:12pt'>or open files (Ctrl+O), a folder (Ctrl+Shift+O), or paste an image (Ctrl+V).</p>
<p style='font-size:11pt'>mmstudio captions them, answers questions about them, scores texts against them,
and shows which image patches each word looked at.</p>
<p style='font-size:10pt; color:#777'>The built-in models know only Shapes World (coloured shapes on a plain
background). For photos, load a BLIP, ViT-GPT2, ViLT, CLIP or SigLIP checkpoint: Model ▸ Models and device
(Ctrl+M).</p>
</div>
"""
BUILTIN_NOTE = ("The built-in models were trained on Shapes World, generated scenes of coloured shapes, and know "
                "nothing else: on a photo they still answer, wrongly. For photos, load a BLIP, ViT-GPT2, ViLT, "
                "CLIP or SigLIP checkpoint (Model ▸ Models and device).")


class MessageBar(QWidget):
    """A dismissable line at the top of the window for errors and notices."""

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QPushButton("✕")
        close.setFlat(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        layout.addWidget(self.label, 1)
        layout.addWidget(close)
        self.setAutoFillBackground(True)
        # A QWidget subclass paints a style sheet's background only with this; it floats over the window,
        # so it must be opaque.
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.is_error = False
        self._shown_at = 0.0
        self._watching = False
        self.hide()

    def show_message(self, text: str, error: bool = False) -> None:
        """Errors stay until dismissed (or their cause is fixed); notices until the user's next action."""
        self.is_error = error
        color = "#fde2e1" if error else "#e3f0fd"
        self.setStyleSheet(f"MessageBar {{ background: {color}; }}")
        self.label.setText(text)
        self.show()
        self._shown_at = time.monotonic()
        self._watch(not error)

    def _watch(self, on: bool) -> None:
        """Watch the application's input only while a notice is up: a filter on every event costs."""
        app = QApplication.instance()
        if on and not self._watching and app is not None:
            app.installEventFilter(self)
        elif not on and self._watching and app is not None:
            app.removeEventFilter(self)
        self._watching = on and app is not None

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt naming
        # A notice ("Exported 40 captions to ...") stays until the next click or key: it is not missed
        # while the user looks elsewhere, and goes without a click on its own ✕.
        if event.type() in (QEvent.Type.MouseButtonPress, QEvent.Type.KeyPress) \
                and time.monotonic() - self._shown_at > 0.5:
            self.hide()
        return False

    def hideEvent(self, event) -> None:  # noqa: N802 - Qt naming
        self._watch(False)
        super().hideEvent(event)


def _threads(count: int) -> str:
    return "all CPU threads" if not count else f"{count} CPU thread{'' if count == 1 else 's'}"


class MainWindow(QMainWindow):
    def __init__(self, settings: Settings | None = None, client: InferenceClient | None = None,
                 job_store=None):
        super().__init__()
        self.settings = settings or Settings()
        self.setWindowTitle("mmstudio")
        self.setAcceptDrops(True)
        options = LoadOptions(device=self.settings.get("model/device"), dtype=self.settings.get("model/dtype"),
                              threads=max(0, self.settings.get("model/threads", int)))
        self.options = options
        self.client = client or InferenceClient(options, self)
        self.models = {task: builtin_name(task) for task in Task}
        self._overlay: tuple | None = None  # (stack, index, label)
        self.model_loads = OpenTickets()
        self._message_source = None  # who showed the error in the message bar, when that is known
        self._load_failures: list[str] = []  # of the files whose error the message bar shows now

        self.gallery = Gallery()
        self.view = ImageView()
        self.controls = OverlayControls()
        self.caption_panel = CaptionPanel(self.client)
        self.ask_panel = AskPanel(self.client)
        self.match_panel = MatchPanel(self.client)
        self.train_panel = TrainPanel(self.client, job_store)
        self.search_panel = SearchPanel(self.client)
        self.duplicates_panel = DuplicatesPanel(self.client)
        self.explore_panel = ExplorePanel(self.client)
        self.caption_panel.generation.attach(self.settings, self.models[Task.CAPTION])
        self.ask_panel.generation.attach(self.settings, self.models[Task.VQA])
        self.message_bar = MessageBar()
        self.world_banner = WorldBanner()
        self.welcome = QLabel(WELCOME)
        self.welcome.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.welcome.setWordWrap(True)
        self.samples_button = QPushButton("Open sample images")
        self.samples_button.setToolTip("Twelve Shapes World scenes: what the built-in models know")
        self.samples_button.clicked.connect(self.open_samples)
        self.welcome_page = welcome_page = QWidget()
        welcome_layout = QVBoxLayout(welcome_page)
        welcome_layout.addStretch(1)
        welcome_layout.addWidget(self.welcome)
        welcome_layout.addWidget(self.samples_button, 0, Qt.AlignmentFlag.AlignHCenter)
        welcome_layout.addStretch(1)
        self.stack = QStackedWidget()
        self.stack.addWidget(welcome_page)
        self.stack.addWidget(self.view)

        center = QWidget()
        center_layout = QVBoxLayout(center)
        center_layout.setContentsMargins(0, 0, 0, 0)
        center_layout.addWidget(self.stack, 1)
        center_layout.addWidget(self.controls)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.caption_panel, "Caption")
        self.tabs.addTab(self.ask_panel, "Ask")
        self.tabs.addTab(self.match_panel, "Match")
        self.tabs.addTab(self.train_panel, "Train")
        self.tabs.addTab(self.search_panel, "Search")
        self.tabs.addTab(self.explore_panel, "Explore")
        self.tabs.addTab(self.duplicates_panel, "Duplicates")
        splitter = QSplitter()
        splitter.addWidget(self.gallery)
        splitter.addWidget(center)
        splitter.addWidget(self.tabs)
        self.gallery.setMinimumWidth(120)
        # Every tab's name readable at the smallest window (1000 px): no scroll arrows hiding the last ones.
        self.tabs.setMinimumWidth(max(380, self.tabs.tabBar().sizeHint().width()))
        splitter.setSizes([200, 760, 440])
        splitter.setStretchFactor(1, 1)
        splitter.setCollapsible(0, False)
        splitter.setCollapsible(2, False)
        root = QWidget()
        root_layout = QVBoxLayout(root)
        root_layout.setContentsMargins(0, 0, 0, 0)
        root_layout.addWidget(splitter, 1)
        self.setCentralWidget(root)
        # The bar floats over the top of the image view instead of taking a row of the layout: when it
        # appeared, everything moved down by its height and a click meant for a button landed elsewhere.
        # Over the image it hides neither the tabs nor the gallery.
        self._center = center
        self.message_bar.setParent(root)
        self.message_bar.hide()
        self.world_banner.setParent(root)  # over the bottom of the image, as the message bar is over its top
        self.world_banner.hide()
        center.installEventFilter(self)
        self.busy_label = QLabel()
        self.statusBar().addPermanentWidget(self.busy_label)

        self._build_menus()
        self._wire()
        self._restore()
        self._update_status()

    # ------------------------------------------------------------------ setup

    def _action(self, menu, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcuts(shortcut if isinstance(shortcut, list) else [QKeySequence(shortcut)])
        action.setStatusTip(tip)
        action.setToolTip(tip)
        action.triggered.connect(slot)
        menu.addAction(action)
        self.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        self._action(file, "Open images…", self.open_files, "Ctrl+O", "Open image files")
        self._action(file, "Open folder…", self.open_folder, "Ctrl+Shift+O", "Open every image in a folder")
        self._action(file, "Open sample images", self.open_samples, tip="Twelve Shapes World scenes")
        self._action(file, "Paste image", self.paste, QKeySequence.StandardKey.Paste, "Paste an image or files")
        self._action(file, "Remove from gallery", self.gallery.remove_selected, QKeySequence.StandardKey.Delete,
                     "Remove the selected images from the gallery")
        file.addSeparator()
        self._action(file, "Export captions…", self.caption_panel.export_dialog, "Ctrl+E",
                     "Save all captions as JSON or CSV")
        self._action(file, "Save overlay as PNG…", self.save_overlay_dialog, "Ctrl+Shift+S",
                     "Save the image with its heatmap")
        file.addSeparator()
        self._action(file, "Quit", self.close, QKeySequence.StandardKey.Quit)
        view = bar.addMenu("&View")
        self._action(view, "Fit to window", self.view.fit, "Ctrl+0")
        self._action(view, "Zoom in", lambda: self.view.zoom(1.25), QKeySequence.StandardKey.ZoomIn)
        self._action(view, "Zoom out", lambda: self.view.zoom(0.8), QKeySequence.StandardKey.ZoomOut)
        self._action(view, "Show or hide overlay", self.controls.show_box.toggle, "H")
        for i, name in enumerate(("Caption", "Ask", "Match", "Train", "Search")):
            self._action(view, f"{name} panel", lambda _=False, i=i: self.tabs.setCurrentIndex(i), f"Ctrl+{i + 1}")
        run = bar.addMenu("&Run")
        self._action(run, "Caption all images", lambda: self.caption_panel.caption_all(self.gallery.refs()),
                     "Ctrl+Shift+A", "Caption every image in the gallery")
        self._action(run, "Cancel", self.cancel_all, "Esc", "Cancel running and queued work")
        model = bar.addMenu("&Model")
        self._action(model, "Models and device…", self.open_model_dialog, "Ctrl+M",
                     "Pick the models (built-in, a folder, the HF cache), the device and the precision")
        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "Keyboard shortcuts", self.show_shortcuts, "F1", "Every shortcut of the window")
        self._action(help_menu, "Documentation (README)", self.open_documentation,
                     tip="Set-up, the app, the command line, training and benchmarks")
        self._action(help_menu, "About mmstudio", self.about)

    def _wire(self) -> None:
        self.gallery.image_selected.connect(self._on_image)
        self.gallery.load_failed.connect(self._on_load_failed)
        self.gallery.count_changed.connect(self._on_count)
        self.gallery.added.connect(self._on_added)
        self.caption_panel.set_gallery_source(self.gallery.refs)
        for panel in (self.caption_panel, self.ask_panel, self.match_panel, self.search_panel,
                      self.explore_panel, self.duplicates_panel):
            panel.message.connect(self.show_info)
            panel.error.connect(self.show_error)
        for panel in (self.caption_panel, self.ask_panel, self.match_panel):
            panel.overlay_requested.connect(self.show_overlay)
        self.caption_panel.captioned.connect(self._on_captioned)
        self.ask_panel.answered.connect(lambda _outcome: self._update_world_banner())
        self.match_panel.scored.connect(lambda _outcome: self._update_world_banner())
        self.world_banner.models_requested.connect(self.open_model_dialog)
        self.tabs.currentChanged.connect(lambda _index: self._show_tab_evidence())
        self.search_panel.set_gallery_source(self.gallery.refs, self.gallery.icon_of, self.gallery.current_ref)
        self.search_panel.image_chosen.connect(self.gallery.select_key)
        self.duplicates_panel.set_gallery_source(lambda: self.gallery.refs(loaded_only=False))
        # Every picture opened, its thumbnail drawn or not: indexing reads them and reports the unreadable.
        self.explore_panel.set_gallery_source(lambda: self.gallery.refs(loaded_only=False), self.gallery.icon_of)
        self.explore_panel.image_chosen.connect(self.gallery.select_key)
        self.explore_panel.images_selected.connect(self.gallery.select_keys)
        self.explore_panel.set_colour_sources(
            lambda key: getattr(self.caption_panel.results.get(key), "caption", None),
            lambda: [[m.image for m in g.members] for g in self.duplicates_panel.scan.report.groups]
            if self.duplicates_panel.scan is not None else [])
        self.duplicates_panel.image_chosen.connect(self._select_path)
        # Copies moved to the Trash or a folder leave the gallery; Undo brings them back.
        self._moved_from_gallery: set[str] = set()
        self.duplicates_panel.moved.connect(self._forget_paths)
        self.duplicates_panel.restored.connect(self._restore_paths)
        self.train_panel.load_model_requested.connect(lambda task, folder: self.load_model(task, folder))
        for task, name in self.models.items():
            self.train_panel.set_loaded_model(task, name)
        self.train_panel.compare_requested.connect(self.compare)
        self.caption_panel.teach_requested.connect(self.teach)
        self.ask_panel.teach_requested.connect(self.teach)
        # Train's errors ("Choose a dataset folder first.") go once its next check or launch succeeds.
        self.train_panel.message.connect(lambda text: self.show_info(text, source=self.train_panel))
        self.train_panel.error.connect(lambda text: self.show_error(text, source=self.train_panel))
        self.client.started.connect(lambda _ticket, text: self.statusBar().showMessage(text, 4000))
        self.client.busy_changed.connect(self._on_busy)
        self.controls.changed.connect(self._redraw_overlay)
        self.controls.opacity_changed.connect(self.view.set_opacity)
        self.controls.visibility_changed.connect(lambda on: self._redraw_overlay())
        self.controls.save_requested.connect(self.save_overlay_dialog)

    def _restore(self) -> None:
        geometry = self.settings.geometry()
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1360, 820)
        self._fit_on_screen()
        index = self.controls.colormap.findText(self.settings.get("overlay/colormap"))
        self.controls.colormap.setCurrentIndex(max(0, index))
        self.controls.opacity.setValue(max(0, min(100, self.settings.get("overlay/opacity", int))))
        for task in Task:
            saved = self.settings.get(f"model/{task.value}")
            if saved and saved != self.models[task]:
                self.load_model(task, saved)

    def _fit_on_screen(self) -> None:
        """Open within the screen's free area: a default (or a size saved on a larger screen) may not fit."""
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is None:
            return
        free = screen.availableGeometry()
        width, height = min(self.width(), free.width()), min(self.height(), free.height())
        if (width, height) != (self.width(), self.height()):
            self.resize(width, height)
        frame = self.frameGeometry()
        if not free.contains(frame):
            self.move(max(free.left(), min(frame.left(), free.right() - frame.width())),
                      max(free.top(), min(frame.top(), free.bottom() - frame.height())))

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt naming
        self.settings.set_geometry(self.saveGeometry())
        self.settings.set("overlay/colormap", self.controls.colormap.currentText())
        self.settings.set("overlay/opacity", self.controls.opacity.value())
        self.settings.sync()
        self.train_panel.shutdown()
        self.client.stop()
        super().closeEvent(event)

    # ------------------------------------------------------------------ files

    def open_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Open images", self.settings.get("files/last_folder"),
                                                "Images (*.png *.jpg *.jpeg *.webp *.bmp *.gif *.tif *.tiff);;"
                                                "All files (*)")
        self.add_paths(paths)

    def open_samples(self) -> None:
        """The shipped Shapes World scenes: the quickest way to see the built-in models work."""
        folder = samples_dir()
        if not folder.is_dir():
            self.show_error(f"The sample images are missing from {folder}: reinstall mmstudio.")
            return
        self.add_paths([str(folder)])

    def open_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images",
                                                  self.settings.get("files/last_folder"))
        if folder:
            self.add_paths([folder])

    def add_paths(self, paths) -> None:
        if not paths:
            return
        self.settings.set("files/last_folder", str(Path(paths[0]).parent if Path(paths[0]).is_file()
                                                   else paths[0]))
        self.gallery.add_paths(paths)  # listed off the GUI thread; `added` reports how many were new

    def _ask_teach_folder(self) -> str | None:
        """Where corrections go: a new dataset folder (created on the first correction) or an existing one."""
        box = QMessageBox(QMessageBox.Icon.Question, "Correct & teach",
                          "Corrections go into a dataset folder (the images and a metadata.jsonl) that the "
                          "Train panel trains on. Start a new one, or add to a dataset you have?", parent=self)
        new = box.addButton("Start a new dataset…", QMessageBox.ButtonRole.AcceptRole)
        existing = box.addButton("Add to a dataset…", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        if box.clickedButton() is new:
            default = Path.home() / "mmstudio-data" / time.strftime("corrections-%Y%m%d")
            path, _ = QFileDialog.getSaveFileName(self, "Name the new dataset folder", str(default))
            return path or None
        if box.clickedButton() is existing:
            return QFileDialog.getExistingDirectory(self, "Dataset folder to add corrections to") or None
        return None

    def _on_added(self, count: int) -> None:
        if count:
            self.statusBar().showMessage(f"Added {count} image{'s' if count != 1 else ''}.", 6000)
        else:
            self.show_info("No new images there.")

    def paste(self) -> None:
        mime = QGuiApplication.clipboard().mimeData()
        if mime is not None and mime.hasUrls():
            self.add_paths([u.toLocalFile() for u in mime.urls() if u.isLocalFile()])
        elif mime is not None and mime.hasImage():
            self.gallery.add_pixels(qimage_to_pil(QGuiApplication.clipboard().image()))
        else:
            self.show_info("The clipboard holds no image or image files.")

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        self.gallery.dragEnterEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        self.gallery.dropEvent(event)

    # ---------------------------------------------------------------- images

    def _on_image(self, ref, image) -> None:
        self.view.set_image(image)
        for panel in (self.caption_panel, self.ask_panel, self.match_panel):
            panel.set_image(ref)
        if ref is not None:
            self.setWindowTitle(f"mmstudio — {ref.path.name if ref.path else 'pasted image'}")
        self._show_tab_evidence()

    def _on_count(self, count: int) -> None:
        self.stack.setCurrentIndex(1 if count else 0)
        if not count:
            self._update_world_banner()

    # ------------------------------------------------------- out of the world

    def active_task(self) -> Task:
        """The task whose model speaks for the picture now: the tab's, or captioning's on Train and Search."""
        return {self.ask_panel: Task.VQA, self.match_panel: Task.ITM}.get(self.tabs.currentWidget(), Task.CAPTION)

    def in_domain_of(self, task: Task, key: str) -> float | None:
        """The in_domain of the latest result of `task`'s model for picture `key` (None: none, or no check)."""
        if task == Task.CAPTION:
            result = self.caption_panel.results.get(key)
            return result.in_domain if result else None
        if task == Task.VQA:
            answered = [turn.result for turn in self.ask_panel.history.get(key, []) if turn.result is not None]
            return answered[-1].in_domain if answered else None
        results = self.match_panel.results.get(key)
        return results[0].in_domain if results else None

    def _update_world_banner(self) -> None:
        """The banner for the selected picture, from the active model's verdict.

        Before the active model has seen the picture (Ask before a question), another built-in model's verdict
        stands in when the active one is built-in too: they were all made on the same world.
        """
        ref = self.gallery.current_ref() if self.stack.currentIndex() == 1 else None
        task = self.active_task()
        value = self.in_domain_of(task, ref.key) if ref else None
        if ref is not None and value is None and self.models[task].startswith(BUILTIN_PREFIX):
            stand_ins = [self.in_domain_of(other, ref.key) for other in Task
                         if other != task and self.models[other].startswith(BUILTIN_PREFIX)]
            value = next((v for v in stand_ins if v is not None), None)
        if self.world_banner.show_for(ref.key if ref else None, task, value):
            self._place_world_banner()

    def _place_world_banner(self) -> None:
        view = self.stack
        top_left = view.mapTo(self.centralWidget(), view.rect().topLeft())
        banner = self.world_banner
        width = view.width()
        height = max(banner.heightForWidth(width) if banner.hasHeightForWidth() else 0, banner.sizeHint().height())
        banner.setGeometry(top_left.x(), top_left.y() + view.height() - height, width, height)
        banner.raise_()

    def _show_tab_evidence(self) -> None:
        """The overlay belongs to the tab in view: its evidence for the selected image, or none (Search, Train).

        An image captioned by Caption all shows its first word's map at once, like one captioned on selection.
        """
        self._overlay = None
        self.controls.set_stack(None)
        self._redraw_overlay()
        panel = self.tabs.currentWidget()
        if panel in (self.caption_panel, self.ask_panel, self.match_panel):
            panel.show_evidence()
        self._update_world_banner()

    # --------------------------------------------------------------- overlay

    def show_overlay(self, stack, index: int, label: str) -> None:
        self._overlay = (stack, index, label)
        self.controls.set_stack(stack, label)
        self._redraw_overlay()

    def _redraw_overlay(self) -> None:
        if self._overlay is None or not self.controls.show_box.isChecked():
            self.view.set_overlay(None)
            return
        stack, index, _label = self._overlay
        layer, head = self.controls.choice()
        amap = stack.maps(layer=layer, head=head)[index]
        self.view.set_overlay(amap, self.controls.colormap.currentText(), self.controls.opacity.value() / 100)

    def save_overlay_dialog(self) -> None:
        if self.view.image is None or self.view.overlay_map is None:
            self.show_info("Select a word, an answer or a text first: there is no overlay to save.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save overlay", "overlay.png", "PNG (*.png)")
        if path:
            self.save_overlay(Path(path))

    def save_overlay(self, path: Path) -> None:
        blended = blend(self.view.image, self.view.overlay_map, opacity=self.controls.opacity.value() / 100,
                        colormap=self.controls.colormap.currentText())
        blended.save(path.with_suffix(".png"))
        self.show_info(f"Saved {path.with_suffix('.png')}")

    # ----------------------------------------------------------------- work

    def _on_captioned(self, _outcome) -> None:
        """A caption arrived: show the selected image's first word's evidence, unless another map is shown."""
        if self._overlay is None and self.tabs.currentWidget() is self.caption_panel:
            self.caption_panel.show_evidence()
        self._update_world_banner()

    def cancel_all(self) -> None:
        self.client.cancel_all()
        self.statusBar().showMessage("Cancelled", 3000)

    # ---------------------------------------------------------------- models

    def load_model(self, task: Task, name: str, options: LoadOptions | None = None) -> Ticket:
        request = LoadModelRequest(task=task, name=name, options=options or self.options)
        ticket = self.model_loads.submit(
            self.client, request, on_finished=self._model_loaded,
            on_error=lambda text: self.show_error(f"{text.rstrip('.')}. Still using {self.models[task]}.",
                                                  source=self.model_loads))
        ticket.ended.connect(self._update_status)
        self._update_status()
        return ticket

    def _model_loaded(self, outcome: ModelOutcome) -> None:
        request = outcome.request
        if self.message_bar.isVisible() and self.message_bar.is_error and self._message_source is self.model_loads:
            self.message_bar.hide()  # a model loads now: the earlier failure to load one is no longer news
        self.models[request.task] = request.name
        self.train_panel.set_loaded_model(request.task, request.name)
        self.options = request.options
        self.settings.set(f"model/{request.task.value}", request.name)
        self.settings.set("model/device", request.options.device)
        self.settings.set("model/dtype", request.options.dtype)
        self.settings.set("model/threads", request.options.threads)
        info = outcome.info
        self.statusBar().showMessage(f"Loaded {request.name} for {request.task.value} ({info.architecture}, "
                                     f"{info.parameters / 1e6:.1f}M parameters) on {info.device}.", 8000)
        generation = {Task.CAPTION: self.caption_panel.generation, Task.VQA: self.ask_panel.generation}
        if request.task in generation:
            generation[request.task].set_model(request.name, outcome.info.generates)  # its remembered settings
        # Results of the old model no longer describe what is loaded.
        panel = {Task.CAPTION: self.caption_panel, Task.VQA: None, Task.ITM: self.match_panel}[request.task]
        if panel is not None:
            panel.results.clear()
            panel.set_image(self.gallery.current_ref())
        self._update_world_banner()  # the old model's verdict no longer speaks for the picture
        self._update_status()

    def open_model_dialog(self) -> None:
        dialog = ModelDialog(self.models, self.options, self, client=self.client)
        if dialog.exec():
            for task, name in dialog.chosen_models().items():
                if name != self.models[task] or dialog.chosen_options() != self.options:
                    self.load_model(task, name, dialog.chosen_options())

    def compare(self, task: Task, folder: str) -> None:
        ref = self.gallery.current_ref()
        image = self.gallery.image_of(ref) if ref else None
        if image is None:
            self.show_info("Select an image to compare the models on.")
            return
        turns = self.ask_panel.history.get(ref.key, [])
        dialog = CompareDialog(self.client, task, (self.models[task], folder), ref, image,
                               question=turns[-1].question if turns else "how many objects are there?",
                               texts=tuple(self.match_panel.texts), parent=self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        dialog.start()
        self.compare_dialog = dialog

    # ---------------------------------------------------------------- teach

    def teach(self, ref, correction: dict, folder: str | None = None) -> Ticket | None:
        """Add the image with the corrected caption or answer to the teaching dataset (off the GUI thread)."""
        folder = folder or self.settings.get("teach/folder")
        if not folder:
            folder = self._ask_teach_folder()
            if not folder:
                return None
            self.settings.set("teach/folder", folder)
        image = self.gallery.image_of(ref)
        if image is None:
            return None
        ticket = self.client.run("Adding the correction…", _add_correction, Path(folder), image, correction)
        ticket.finished.connect(lambda _row: self.show_info(f"Added to {folder}: train on it in the Train panel."))
        # MMStudioError too: a text over the dataset reader's caps
        ticket.failed.connect(lambda exc: self.show_error(f"Could not add the correction to {folder}: {exc}"))
        return ticket

    def _forget_paths(self, paths: list) -> None:
        """Files moved away: out of the gallery, remembered so that Undo can put them back in it."""
        shown = {str(ref.path) for ref in self.gallery.refs(loaded_only=False) if ref.path is not None}
        gone = [p for p in paths if p in shown]
        self._moved_from_gallery.update(gone)
        self.gallery.remove_paths(gone)

    def _restore_paths(self, paths: list) -> None:
        """Put back in the gallery what Undo put back on disk (what was there before: nothing else is added)."""
        gone = [p for p in paths if p in self._moved_from_gallery]
        self._moved_from_gallery.difference_update(gone)
        if gone:
            self.gallery.add_paths(gone)

    def _select_path(self, path: str) -> None:
        """Show a picture the Duplicates view names, where the gallery has it."""
        for ref in self.gallery.refs(loaded_only=False):
            if ref.path is not None and str(ref.path) == path:
                self.gallery.select_key(ref.key)
                return

    # --------------------------------------------------------------- status

    def _update_status(self) -> None:
        busy = "busy" if self.client.busy else "idle"
        loading = " · loading a model…" if len(self.model_loads) else ""
        self.busy_label.setText(f"caption: {self.models[Task.CAPTION]} · vqa: {self.models[Task.VQA]} · "
                                f"match: {self.models[Task.ITM]} · {self.options.device} {self.options.dtype} · "
                                f"{_threads(self.options.threads)} · {busy}{loading}")

    def _on_busy(self, busy: bool) -> None:
        if not busy:
            self.statusBar().clearMessage()
        self._update_status()

    def _on_load_failed(self, _what: str, why: str) -> None:
        """Files that could not be opened, gathered in one message while it is shown (not only the last)."""
        if not (self.message_bar.isVisible() and self._load_failures):
            self._load_failures = []
        if why not in self._load_failures:
            self._load_failures.append(why)
        if len(self._load_failures) == 1:
            self.show_error(why)
            return
        shown = self._load_failures[-6:]
        more = len(self._load_failures) - len(shown)
        self.show_error(f"{len(self._load_failures)} files could not be opened:\n" + "\n".join(shown)
                        + (f"\n… and {more} more" if more else ""))

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt naming
        if watched is self._center and event.type() in (QEvent.Type.Resize, QEvent.Type.Move):
            self._place_message_bar()
            if self.world_banner.isVisible():
                self._place_world_banner()
        return False

    def _place_message_bar(self) -> None:
        top_left = self._center.mapTo(self.centralWidget(), self._center.rect().topLeft())
        width = self._center.width()
        bar = self.message_bar
        height = bar.heightForWidth(width) if bar.hasHeightForWidth() else bar.sizeHint().height()
        bar.setGeometry(top_left.x(), top_left.y(), width, max(height, bar.sizeHint().height()))
        bar.raise_()

    def show_error(self, text: str, source=None) -> None:
        self._message_source = source
        self.message_bar.show_message(text, error=True)
        self._place_message_bar()

    def show_info(self, text: str, source=None) -> None:
        resolved = source is not None and source is self._message_source  # its cause reports success now
        if self.message_bar.isVisible() and self.message_bar.is_error and not resolved:
            self.statusBar().showMessage(text, 6000)  # an unread error stays in view
            return
        self._message_source = source
        self.message_bar.show_message(text)
        self._place_message_bar()

    def shortcut_table(self) -> list[tuple[str, str]]:
        """(action, shortcut) of every action that has one, in menu order."""
        rows = []
        for action in self.actions():
            keys = ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in action.shortcuts())
            if keys:
                rows.append((action.text().replace("&", ""), keys))
        return rows

    def open_documentation(self) -> bool:
        """Open the README that came with mmstudio in the system's viewer for it."""
        path = readme_path()
        if path is None or not QDesktopServices.openUrl(QUrl.fromLocalFile(str(path))):
            self.show_info("The README could not be opened here; `mmstudio --help` lists the commands.")
            return False
        return True

    def show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td>{html.escape(text)}</td><td>&nbsp;&nbsp;<b>{html.escape(keys)}</b></td></tr>"
                       for text, keys in self.shortcut_table())
        QMessageBox.information(self, "Keyboard shortcuts",
                                f"<table>{rows}</table><p>In the Ask panel, Ctrl+Enter sends the question. "
                                "Scroll on the image to zoom, drag to pan, double-click to fit.</p>")

    def about(self) -> None:
        QMessageBox.about(self, "About mmstudio",
                          f"<b>mmstudio {__version__}</b><p>A desktop studio for image multimodal models: "
                          "captions, visual questions, image-text matching and the attention behind them.</p>"
                          f"<p>{BUILTIN_NOTE}</p><p>The README (set-up, the command line, benchmarks) comes with "
                          "the source; <code>mmstudio --help</code> lists the commands.</p>")


def _add_correction(folder: Path, image, correction: dict) -> dict:
    try:
        return add_correction(folder, image, **correction)
    except (OSError, ValueError) as exc:  # a disk problem or a correction without text: the user's to fix
        raise MMStudioError(str(exc)) from None

