"""Explore panel: the gallery as a map of the matching model's embedding space, with a text placed on it.

Each picture is a point (PCA: the two principal directions of the image embeddings; or UMAP, computed in
its own process: mmstudio/embedding_map.py); a text typed below lands in the same space, marked with a
star, and colours the points by how well each picture fits it, its ten best ringed. Hover shows a
picture's thumbnail, a click shows it in the gallery, Shift+drag (a rectangle) or Ctrl+drag (a lasso)
selects pictures there. Drawn with pyqtgraph: pan with the mouse, zoom with the wheel; past DENSE_FROM
pictures as a density image (qt_density_map), so a million points pan smoothly.
"""

from __future__ import annotations

import base64
import html
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from PySide6.QtCore import QBuffer, QProcess, Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from mmstudio.embedding_map import (
    UMAP_NEIGHBOURS,
    MapLayout,
    caption_has,
    saved_layout,
    umap_available,
    umap_missing,
)
from mmstudio.gui.qt_density_map import DensityMap, in_polygon, inside, selecting_view_box
from mmstudio.gui.qt_unknown_words import marked_html
from mmstudio.gui.worker import OpenTickets
from mmstudio.jobs import mmstudio_command
from mmstudio.requests import MapOutcome, MapRequest

BEST = 10  # pictures ringed as the query's best
THUMB = 128  # pixels of the thumbnail a hovered point shows
DENSE_FROM = 50_000  # more points than this: drawn as a density image (qt_density_map), not one by one
PLAIN = (40, 110, 190, 170)
FADED = (175, 180, 190, 90)  # a picture outside what the colour marks (no such word, no copies, no caption)
# Tableau 10: groups told apart at a glance, and by most colour-blind readers.
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
COLOURINGS = (("Fit to the text", "fit"), ("Cluster", "cluster"), ("Caption word", "word"),
              ("Caption right / wrong", "correct"), ("Duplicate group", "duplicates"))
RIGHT, WRONG = (40, 160, 60, 230), (215, 40, 40, 235)


def _pg():
    """pyqtgraph, imported when the map is first needed: 0.3-0.4 s that the app's start-up does not pay."""
    import pyqtgraph

    return pyqtgraph


def _colours(similarity: np.ndarray) -> list:
    """Low similarity pale grey-blue, high a strong orange: the query's fit, whatever its range."""
    pg = _pg()
    low, high = float(similarity.min()), float(similarity.max())
    share = (similarity - low) / (high - low) if high > low else np.zeros_like(similarity)
    start, end = np.array([170, 185, 205, 120]), np.array([235, 100, 20, 235])
    return [pg.mkBrush(*(start + s * (end - start)).astype(int)) for s in share]


class ExplorePanel(QWidget):
    message = Signal(str)
    error = Signal(str)
    image_chosen = Signal(str)  # the gallery key of a point the user clicked
    images_selected = Signal(list)  # the gallery keys of the points in a rectangle the user drew

    def __init__(self, client, parent=None):
        super().__init__(parent)
        self.client = client
        self.pending = OpenTickets()
        self.outcome: MapOutcome | None = None
        self._latest: int | None = None
        self._gallery_refs = lambda: []
        self._icon_of = lambda _key: None

        self.map_button = QPushButton("Map the gallery")
        self.map_button.setToolTip("Place every picture of the gallery by its embedding (new ones are indexed)")
        self.map_button.clicked.connect(lambda: self.draw_map(self.query.text()))
        self.query = QLineEdit()
        self.query.setPlaceholderText("A text to place on the map, e.g. a small red circle")
        self.query.setToolTip("Lands among the pictures it describes; points are coloured by how well they fit")
        self.query.returnPressed.connect(lambda: self.draw_map(self.query.text()))
        self.method = QComboBox()
        self.method.addItem("PCA", "pca")
        self.method.addItem("UMAP", "umap")
        self.method.setToolTip("PCA: the plane of the two main directions, at once. UMAP: groups of alike "
                               "pictures kept together and apart from others; computed in the background "
                               "(minutes for 100,000 pictures), kept with the index")
        if not umap_available():
            self.method.model().item(1).setEnabled(False)
            self.method.setItemData(1, umap_missing()[:1].upper() + umap_missing()[1:], Qt.ItemDataRole.ToolTipRole)
        self.method.currentIndexChanged.connect(lambda _i: self._method_changed())
        self.colour = QComboBox()
        for label, data in COLOURINGS:
            self.colour.addItem(label, data)
        self.colour.setToolTip("Colour the points by how well they fit the text, by a group of alike pictures "
                               "(k-means), by a word of their caption (Caption ▸ Caption all), by whether "
                               "their caption is right (dataset folders), or by the Duplicates tab's groups")
        self.colour_word = QLineEdit()
        self.colour_word.setPlaceholderText("word, e.g. red")
        self.colour_word.setMaximumWidth(140)
        self.colour_word.setVisible(False)
        self.colour.currentIndexChanged.connect(self._colour_changed)
        self.colour_word.textChanged.connect(lambda _t: self.show_layout(reframe=False))
        self._captions_of = lambda _key: None
        self._duplicate_groups = lambda: []
        self.umap_process: QProcess | None = None
        self._umap_note = ""  # what the status says of the UMAP layout while it is not shown
        self._umap_failed: int | None = None  # the map (request id) whose UMAP failed: not started again
        self._tip_of: tuple[str, str] = ("", "")  # the hovered picture's key and its tooltip (a PNG encoded once)
        self._umap_files: tempfile.TemporaryDirectory | None = None
        self.plot = None  # built on first view (see _pg)
        self.points = self.best = self.star = None
        self.status = QLabel("Map the gallery: pictures that look alike to the model land together.")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.RichText)  # always escaped HTML: a file name's "&" reads as typed

        row = QHBoxLayout()
        row.addWidget(self.query, 1)
        row.addWidget(self.map_button)
        # How it is drawn on a row of its own: the text keeps its width in a narrow window.
        options = QHBoxLayout()
        options.addWidget(QLabel("Layout"))
        options.addWidget(self.method)
        options.addSpacing(12)
        options.addWidget(QLabel("Colour"))
        options.addWidget(self.colour)
        options.addWidget(self.colour_word)
        options.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Explore — the gallery in the model's image-text space"))
        layout.addLayout(row)
        layout.addLayout(options)
        self._plot_slot = QVBoxLayout()
        layout.addLayout(self._plot_slot, 1)
        layout.addWidget(self.status)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        self._ensure_plot()

    def _ensure_plot(self) -> None:
        if self.plot is not None:
            return
        pg = _pg()
        self.plot = pg.PlotWidget(background="w", viewBox=selecting_view_box())
        self.plot.getViewBox().selected.connect(self.select_area)
        self.plot.getViewBox().lassoed.connect(self.select_lasso)
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.points = pg.ScatterPlotItem(size=9, pen=pg.mkPen(255, 255, 255, 160), hoverable=True,
                                         hoverSize=13, tip=None)
        self.points.sigClicked.connect(self._clicked)
        self.points.sigHovered.connect(self._hovered)
        self.best = pg.ScatterPlotItem(size=15, pen=pg.mkPen(20, 20, 20, 220, width=2), brush=None)
        self.star = pg.ScatterPlotItem(size=22, symbol="star", pen=pg.mkPen(20, 20, 20),
                                       brush=pg.mkBrush(250, 210, 0))
        for item in (self.points, self.best, self.star):
            self.plot.addItem(item)
        self.density = DensityMap(self.plot)
        # Picking on the density image: the scatter item picks its own points.
        self.plot.scene().sigMouseMoved.connect(self._moved)
        self.plot.scene().sigMouseClicked.connect(self._scene_clicked)
        self._plot_slot.addWidget(self.plot)

    def set_gallery_source(self, refs_callable, icon_of=None) -> None:
        """Where the pictures to map come from, and (optionally) their thumbnails by gallery key, for hover."""
        self._gallery_refs = refs_callable
        if icon_of is not None:
            self._icon_of = icon_of

    def _tip(self, key: str) -> str:
        """A hovered point: its thumbnail (when the gallery has one) above its name; the last one kept, as the
        mouse moves over the same point many times."""
        if self._tip_of[0] != key:
            self._tip_of = (key, self._tip_html(key))
        return self._tip_of[1]

    def _tip_html(self, key: str) -> str:
        name = html.escape(key, quote=False)
        icon = self._icon_of(key)
        if icon is None or icon.isNull():
            return name
        buffer = QBuffer()
        buffer.open(QBuffer.OpenModeFlag.WriteOnly)
        icon.pixmap(THUMB, THUMB).save(buffer, "PNG")
        data = base64.b64encode(bytes(buffer.data())).decode()
        return f'<img src="data:image/png;base64,{data}"><br>{name}'

    def draw_map(self, query: str = "") -> None:
        refs = tuple(self._gallery_refs())
        if not refs:
            self.message.emit("Open some images first: the map shows the gallery.")
            return
        request = MapRequest(images=refs, query=" ".join(query.split()))
        self._latest = request.id
        self.status.setText(f"Mapping {len(refs)} images…")
        self.pending.submit(self.client, request, on_finished=self.show_map, on_error=self.error.emit,
                            on_ended=self._ended)

    def _ended(self, request, reason: str) -> None:
        if request.id == self._latest:
            self.status.setText(reason)

    def show_map(self, outcome: MapOutcome) -> None:
        if outcome.request.id != self._latest:
            return
        self.outcome = outcome
        self._stop_umap()
        self._want_umap()
        self.show_layout()

    def _method_changed(self) -> None:
        self._want_umap()
        self.show_layout()

    def _want_umap(self) -> None:
        """Start the UMAP layout when it is chosen and the map lacks it: once per map, never from drawing."""
        outcome = self.outcome
        if (self.method.currentData() == "umap" and outcome is not None and outcome.umap is None
                and self._umap_failed != outcome.request.id):
            self._umap_note = self._start_umap()

    def layout(self) -> MapLayout | None:
        """What the map shows: UMAP when chosen and ready, else the PCA plane."""
        if self.outcome is None:
            return None
        if self.method.currentData() == "umap" and self.outcome.umap is not None:
            return self.outcome.umap
        return self.outcome.layout

    def show_layout(self, reframe: bool = True) -> None:
        """Draw the map; `reframe` False keeps the user's pan and zoom (only the colours changed)."""
        outcome = self.outcome
        if outcome is None:
            return
        self._ensure_plot()
        layout = self.layout()
        xy = layout.xy
        keys = [ref.key for ref in outcome.images]
        if len(xy) > DENSE_FROM:
            self.points.setData(x=[], y=[])
            self.density.set_points(xy)
            legend = ("" if self.colour.currentData() == "fit" else
                      f"colours are drawn up to {DENSE_FROM:,} pictures; this many are drawn by density")
        else:
            self.density.set_points(np.zeros((0, 2), np.float32))
            brushes, legend = self._brushes(outcome)
            size = 9 if len(xy) <= 1_000 else 6 if len(xy) <= 10_000 else 4  # many points: smaller, less overlap
            self.points.setData(x=xy[:, 0], y=xy[:, 1], data=keys, brush=brushes, size=size)
        if outcome.query_xy is not None:
            order = np.argsort(-outcome.similarity)[:BEST]
            star = (outcome.query_xy if layout.method == "pca"
                    else layout.place_text(np.zeros(0), outcome.similarity))
            self.best.setData(x=xy[order, 0], y=xy[order, 1])
            self.star.setData(x=[star[0]], y=[star[1]])
        else:
            self.best.setData(x=[], y=[])
            self.star.setData(x=[], y=[])
        if reframe and len(self.density.xy):
            self.density.frame()
        else:
            if reframe:
                self.plot.autoRange()
            self.density.redraw()
        if layout.method == "pca":
            shown = f"the plane shows {layout.explained:.0%} of the variance"
        else:
            shown = f"UMAP keeps each picture's {UMAP_NEIGHBOURS} nearest together"
        text = html.escape(f"{len(keys)} pictures; {shown}.", quote=False)
        if outcome.query_xy is not None:
            query = marked_html(outcome.request.query, outcome.unknown_words)
            text += f" The star is “{query}”; ringed: its {min(BEST, len(keys))} best fits."
        if legend:
            text += " " + html.escape(legend[0].upper() + legend[1:], quote=False) + "."
        text += " Shift+drag (a rectangle) or Ctrl+drag (a lasso) selects pictures in the gallery."
        if self.method.currentData() == "umap" and outcome.umap is None and self._umap_note:
            text += "<br>" + html.escape(self._umap_note, quote=False)
        for note in outcome.report.notes:
            text += "<br>" + html.escape(note, quote=False)
        self.status.setText(text)

    # ------------------------------------------------------------------ colour

    def set_colour_sources(self, captions_of=None, duplicate_groups=None) -> None:
        """Where colours come from: a picture's caption by gallery key (or None), the duplicate groups
        (lists of file paths) last found."""
        if captions_of is not None:
            self._captions_of = captions_of
        if duplicate_groups is not None:
            self._duplicate_groups = duplicate_groups

    def _colour_changed(self) -> None:
        self.colour_word.setVisible(self.colour.currentData() == "word")
        self.show_layout(reframe=False)

    def _brushes(self, outcome: MapOutcome) -> tuple[list, str]:
        """A brush per point for the chosen colouring, and a line saying what the colours mean."""
        pg = _pg()
        count = len(outcome.images)
        mode = self.colour.currentData()
        if mode == "cluster" and outcome.clusters is not None:
            brushes = [pg.mkBrush(*PALETTE[c % len(PALETTE)], 210) for c in outcome.clusters]
            return brushes, f"colours: {int(outcome.clusters.max()) + 1} groups of alike pictures (k-means)"
        if mode == "word":
            word = self.colour_word.text().strip().lower()
            captions = [self._captions_of(ref.key) for ref in outcome.images]
            known = sum(c is not None for c in captions)
            if not word:
                return [pg.mkBrush(*PLAIN)] * count, "type a word to colour the pictures whose caption has it"
            holds = caption_has(word)
            has = [holds(c) for c in captions]
            brushes = [pg.mkBrush(235, 100, 20, 235) if h else pg.mkBrush(*FADED) for h in has]
            missing = f"; {count - known} not captioned yet (Caption ▸ Caption all)" if known < count else ""
            return brushes, f"orange: {sum(has)} captions with “{word}”{missing}"
        if mode == "correct":  # an evaluation on the map: the caption against the dataset's true one
            captions = [self._captions_of(ref.key) for ref in outcome.images]
            truths = outcome.truths or (None,) * count
            verdicts = [None if c is None or t is None else " ".join(c.split()) == " ".join(t.split())
                        for c, t in zip(captions, truths)]
            brushes = [pg.mkBrush(*(FADED if v is None else RIGHT if v else WRONG)) for v in verdicts]
            right, wrong = verdicts.count(True), verdicts.count(False)
            known = sum(t is not None for t in truths)
            if not known:
                return brushes, "no true captions: this colouring is for dataset folders (a metadata.jsonl)"
            waiting = sum(t is not None and c is None for c, t in zip(captions, truths))
            later = f"; {waiting} not captioned yet (Caption ▸ Caption all)" if waiting else ""
            return brushes, f"green: {right} captions right, red: {wrong} wrong, of {known} with a true caption{later}"
        if mode == "duplicates":
            group_of = {}
            groups = [g for g in self._duplicate_groups() if len(g) > 1]
            for number, group in enumerate(groups):
                for path in group:
                    group_of[str(path)] = number
            numbers = [group_of.get(str(ref.path) if ref.path is not None else ref.key) for ref in outcome.images]
            brushes = [pg.mkBrush(*PALETTE[n % len(PALETTE)], 230) if n is not None else pg.mkBrush(*FADED)
                       for n in numbers]
            shown = len({n for n in numbers if n is not None})
            return brushes, (f"colours: {shown} group{'s' if shown != 1 else ''} of copies (Duplicates tab)" if groups
                             else "no duplicate groups yet: Find duplicates in the Duplicates tab")
        if outcome.similarity is not None:
            return _colours(outcome.similarity), ""
        return [pg.mkBrush(*PLAIN)] * count, ""

    # ------------------------------------------------------------------ UMAP, in its own process

    def _start_umap(self) -> str:
        """Start computing the UMAP layout of the map's pictures (unless under way); what to tell the user."""
        if not umap_available():
            return f"{umap_missing()[:1].upper()}{umap_missing()[1:]}. The PCA plane is shown."
        if self.umap_process is not None:
            return "Computing the UMAP layout in the background; the PCA plane is shown meanwhile."
        outcome = self.outcome
        self._umap_files = tempfile.TemporaryDirectory(prefix="mmstudio-umap-")
        folder = Path(self._umap_files.name)
        np.save(folder / "vectors.npy", outcome.vectors)
        out = outcome.umap_path or folder / "layout.npz"
        command = mmstudio_command("layout", str(folder / "vectors.npy"), str(out), "--method", "umap")
        process = QProcess(self)
        process.setProgram(command[0])
        process.setArguments(command[1:])
        process.finished.connect(lambda code, _status, p=process, o=outcome, f=out: self._umap_done(p, o, f, code))
        self.umap_process = process
        process.start()
        return "Computing the UMAP layout in the background; the PCA plane is shown meanwhile."

    def _umap_done(self, process: QProcess, outcome: MapOutcome, out: Path, code: int) -> None:
        if process is not self.umap_process:
            return  # stopped: a newer map replaced it
        errors = bytes(process.readAllStandardError()).decode(errors="replace").strip().splitlines()
        self.umap_process = None
        layout = saved_layout(out, len(outcome.images)) if code == 0 else None
        self._drop_umap_files()
        if layout is None:
            why = errors[-1] if errors else f"exit code {code}"
            self._umap_failed = outcome.request.id
            self._umap_note = f"The UMAP layout failed: {why}. The PCA plane is shown."
            self.show_layout(reframe=False)
            return
        if self.outcome is not None and self.outcome.request.id == outcome.request.id:
            self.outcome = replace(self.outcome, umap=layout)
            self.show_layout()

    def _stop_umap(self) -> None:
        process, self.umap_process = self.umap_process, None
        if process is not None:
            process.kill()
            process.waitForFinished(2000)
        self._drop_umap_files()

    def _drop_umap_files(self) -> None:
        if self._umap_files is not None and self.umap_process is None:
            self._umap_files.cleanup()
            self._umap_files = None

    def _clicked(self, _item, points, _event=None) -> None:
        if len(points):
            self.image_chosen.emit(points[0].data())

    def _hovered(self, _item, points, _event=None) -> None:
        if len(points):
            self.plot.setToolTip(self._tip(str(points[0].data())))

    def _density_row(self, position) -> int | None:
        if self.outcome is None or not len(self.density.xy):
            return None
        point = self.plot.getViewBox().mapSceneToView(position)
        return self.density.nearest(point.x(), point.y())

    def _moved(self, position) -> None:
        row = self._density_row(position)
        if row is not None:
            self.plot.setToolTip(self._tip(self.outcome.images[row].key))

    def _scene_clicked(self, event) -> None:
        row = self._density_row(event.scenePos())
        if row is not None:
            self.image_chosen.emit(self.outcome.images[row].key)

    def select_area(self, rect) -> None:
        if self.outcome is not None:
            self._select(inside(self.layout().xy, rect))

    def select_lasso(self, corners) -> None:
        if self.outcome is not None:
            self._select(in_polygon(self.layout().xy, corners))

    def _select(self, rows) -> None:
        self.images_selected.emit([self.outcome.images[row].key for row in rows])
        self.message.emit(f"{len(rows):,} pictures selected in the gallery" if len(rows)
                          else "No picture in that rectangle.")
