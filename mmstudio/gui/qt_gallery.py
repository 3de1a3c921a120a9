"""The gallery: thumbnails of the opened images (files, folders, drops, clipboard)."""

from __future__ import annotations

import itertools
import os
from collections import OrderedDict
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QItemSelectionModel, QObject, QRunnable, QSize, Qt, QThreadPool, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListWidget, QListWidgetItem

from mmstudio.errors import MMStudioError
from mmstudio.gui.qt_clipboard import qimage_to_pil
from mmstudio.gui.qt_image_view import pil_to_qimage
from mmstudio.imaging import iter_image_files
from mmstudio.requests import ImageRef

THUMB = 96
# Decoded photos are big (a 12-megapixel one is 36 MB): keep the ones used last within this budget and
# decode the others again from their files when they are selected.
CACHE_BYTES = 512 * 2**20
_REF_ROLE = Qt.ItemDataRole.UserRole
# The picture the app shows, alone selected: a programmatic choice would otherwise add to the selection.
_ONLY = QItemSelectionModel.SelectionFlag.ClearAndSelect
_clipboard_numbers = itertools.count(1)


class _ThumbSignals(QObject):
    loaded = Signal(str, object, object)  # key, full image (PIL), thumbnail (QImage)
    failed = Signal(str, str)  # key, message


class _ListSignals(QObject):
    found = Signal(int, object, bool)  # listing id, [(key, path)...] in order, last chunk


class _ListJob(QRunnable):
    """Walking a folder and resolving each path touches the disk once per file: not on the GUI thread."""

    CHUNK = 100  # files per hand-over: the GUI thread adds them between two paints

    def __init__(self, listing: int, paths: list[Path], signals: _ListSignals):
        super().__init__()
        self.listing, self.paths, self.signals = listing, paths, signals

    def run(self) -> None:
        chunk: list[tuple[str, Path]] = []
        for path in iter_image_files(self.paths):
            chunk.append((str(path.resolve()), path))
            if len(chunk) >= self.CHUNK:
                self.signals.found.emit(self.listing, chunk, False)
                chunk = []
        self.signals.found.emit(self.listing, chunk, True)


class _ThumbJob(QRunnable):
    """Decoding a large photo takes time: it happens on the pool, never on the GUI thread."""

    def __init__(self, ref: ImageRef, signals: _ThumbSignals):
        super().__init__()
        self.ref, self.signals = ref, signals

    def run(self) -> None:
        try:
            image = self.ref.load()
        except MMStudioError as exc:
            self.signals.failed.emit(self.ref.key, str(exc))
            return
        thumb = image.copy()
        thumb.thumbnail((THUMB, THUMB))
        self.signals.loaded.emit(self.ref.key, image, pil_to_qimage(thumb))


class Gallery(QListWidget):
    image_selected = Signal(object, object)  # ImageRef (or None), PIL image (or None)
    load_failed = Signal(str, str)  # what, why
    count_changed = Signal(int)
    added = Signal(int)  # a call of add_paths is listed: how many new images it queued

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setViewMode(QListWidget.ViewMode.IconMode)
        self.setIconSize(QSize(THUMB, THUMB))
        self.setGridSize(QSize(THUMB + 16, THUMB + 28))
        self.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.setMovement(QListWidget.Movement.Static)
        # Thousands of items: every cell is the same size (no per-item size hints to compute), and the
        # view lays them out a batch per turn of the event loop instead of all at once.
        self.setUniformItemSizes(True)
        self.setLayoutMode(QListWidget.LayoutMode.Batched)
        self.setBatchSize(200)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setAcceptDrops(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DropOnly)
        self.setToolTip("Drop image files or folders here, or paste an image (Ctrl+V)")
        self._images: OrderedDict[str, Image.Image] = OrderedDict()  # least recently used first
        self._image_bytes = 0  # of the images in _images
        self._loaded: set[str] = set()  # keys whose image decoded once: usable, even when not in memory now
        self._items: dict[str, QListWidgetItem] = {}  # by key: folders of thousands stay fast
        self._pool = QThreadPool(self)
        # Half the cores: decoding beside the inference worker on every core left the GUI thread waiting
        # for a core and the GIL (bench/gui_stall.py, opening 1,000 images).
        self._pool.setMaxThreadCount(max(1, (os.cpu_count() or 2) // 2))
        self._signals = _ThumbSignals()
        self._signals.loaded.connect(self._on_loaded)
        self._signals.failed.connect(self._on_failed)
        self._lister = QThreadPool(self)
        self._lister.setMaxThreadCount(1)  # listings arrive in the order they were asked for
        self._list_signals = _ListSignals()
        self._list_signals.found.connect(self._on_found)
        self._listings: dict[int, int] = {}  # listing id -> new images so far
        self._listing_ids = itertools.count(1)
        self.currentItemChanged.connect(self._on_current)

    # ---------------------------------------------------------------- adding

    def add_paths(self, paths) -> None:
        """Add files and folders: listed off the GUI thread, then `added` says how many were new.

        The first new image of the call is selected and scrolled to (what was opened is what is shown).
        """
        listing = next(self._listing_ids)
        self._listings[listing] = 0
        self._lister.start(_ListJob(listing, [Path(p) for p in paths], self._list_signals))

    @property
    def loaded_count(self) -> int:
        """How many images have decoded once (cheap: `refs()` walks every item)."""
        return len(self._loaded)

    def _on_found(self, listing: int, found: list, last: bool) -> None:
        new = [(key, path) for key, path in found if self._item(key) is None]
        first = not self._listings.get(listing)
        self.setUpdatesEnabled(False)  # one relayout for the chunk, not one per item
        try:
            for key, path in new:
                self._add(ImageRef(key=key, path=path), announce=False)
        finally:
            self.setUpdatesEnabled(True)
        if new:
            self.count_changed.emit(self.count())
            if first:
                item = self._items[new[0][0]]
                self.setCurrentItem(item, _ONLY)
                self.scrollToItem(item)
        self._listings[listing] = self._listings.get(listing, 0) + len(new)
        if last:
            self.added.emit(self._listings.pop(listing))

    def add_pixels(self, image: Image.Image, label: str = "Pasted image") -> ImageRef:
        ref = ImageRef(key=f"clipboard:{next(_clipboard_numbers)}", pixels=image.convert("RGB"))
        self._add(ref, label)
        self.setCurrentItem(self._items[ref.key], _ONLY)  # what was pasted is what is shown
        self.scrollToItem(self._items[ref.key])
        return ref

    def _add(self, ref: ImageRef, label: str | None = None, *, announce: bool = True) -> None:
        item = QListWidgetItem(label or (ref.path.name if ref.path else ref.key))
        item.setData(_REF_ROLE, ref)
        item.setToolTip(str(ref.path) if ref.path else label or ref.key)
        item.setFlags(Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled)
        item.setSizeHint(self.gridSize())  # uniform item sizes take the first item's: the full cell, not an empty one
        self.addItem(item)
        self._items[ref.key] = item
        self._pool.start(_ThumbJob(ref, self._signals))
        if announce:
            self.count_changed.emit(self.count())

    def _on_loaded(self, key: str, image: Image.Image, thumb) -> None:
        item = self._item(key)
        if item is None:
            return
        self._loaded.add(key)
        self._remember(key, image)
        pixmap = QPixmap.fromImage(thumb)
        icon = QIcon(pixmap)
        icon.addPixmap(pixmap, QIcon.Mode.Selected)  # the selected image keeps its colours (no highlight tint)
        item.setIcon(icon)
        if self.currentItem() is None:
            self.setCurrentItem(item, _ONLY)
        elif self.currentItem() is item:
            self._on_current(item, None)

    def _remember(self, key: str, image: Image.Image) -> None:
        self._forget(key)
        self._images[key] = image
        self._image_bytes += _bytes(image)
        while self._image_bytes > CACHE_BYTES and len(self._images) > 1:
            self._forget(next(iter(self._images)))

    def _forget(self, key: str) -> None:
        image = self._images.pop(key, None)
        if image is not None:
            self._image_bytes -= _bytes(image)

    def _recall(self, ref: ImageRef) -> Image.Image | None:
        image = self._images.get(ref.key)
        if image is not None:
            self._images.move_to_end(ref.key)
        return image

    def _on_failed(self, key: str, message: str) -> None:
        self._loaded.discard(key)
        item = self._items.pop(key, None)
        if item is not None:
            self.takeItem(self.row(item))
            self.count_changed.emit(self.count())
        self.load_failed.emit(key, message)

    # --------------------------------------------------------------- reading

    def _item(self, key: str) -> QListWidgetItem | None:
        return self._items.get(key)

    def refs(self, loaded_only: bool = True) -> list[ImageRef]:
        refs = [self.item(r).data(_REF_ROLE) for r in range(self.count())]
        return [r for r in refs if r.key in self._loaded] if loaded_only else refs

    def icon_of(self, key: str):
        """The thumbnail of a gallery image (an empty QIcon until it is decoded, or when it is gone)."""
        item = self._item(key)
        return item.icon() if item is not None else QIcon()

    @property
    def in_memory(self) -> set[str]:
        """Keys of the images held decoded now (the others are decoded again when needed)."""
        return set(self._images)

    def image_of(self, ref: ImageRef) -> Image.Image | None:
        """The decoded image; one no longer in memory is decoded again here (the selected one always is)."""
        if ref.key not in self._loaded:
            return None
        image = self._recall(ref)
        if image is None:
            try:
                image = ref.load()
            except MMStudioError:
                return None
            self._remember(ref.key, image)
        return image

    def current_ref(self) -> ImageRef | None:
        item = self.currentItem()
        return item.data(_REF_ROLE) if item is not None else None

    def select_key(self, key: str) -> None:
        item = self._item(key)
        if item is not None:
            self.setCurrentItem(item, _ONLY)

    def select_keys(self, keys) -> None:
        """Select these pictures (the Explore map's rectangle), the first of them current; others unselected."""
        wanted = set(keys)
        first = None
        self.blockSignals(True)  # one current-change below, not one per picture
        try:
            for row in range(self.count()):
                item = self.item(row)
                chosen = item.data(_REF_ROLE).key in wanted
                item.setSelected(chosen)
                if chosen and first is None:
                    first = item
        finally:
            self.blockSignals(False)
        if first is not None:
            self.setCurrentItem(first, QItemSelectionModel.SelectionFlag.NoUpdate)
            self.scrollToItem(first)

    def _on_current(self, item, _previous) -> None:
        if item is None:
            self.image_selected.emit(None, None)
            return
        ref = item.data(_REF_ROLE)
        image = self._recall(ref)
        if image is not None:
            self.image_selected.emit(ref, image)
        elif ref.key in self._loaded:  # let go to save memory: decode it again off the GUI thread
            self._pool.start(_ThumbJob(ref, self._signals))

    def remove_selected(self) -> None:
        self._remove(self.selectedItems())

    def remove_paths(self, paths) -> None:
        """Take out the items of these files (moved away elsewhere in the app); others stay as they are."""
        wanted = {str(p) for p in paths}
        self._remove([self.item(r) for r in range(self.count())
                      if (ref := self.item(r).data(_REF_ROLE)).path is not None and str(ref.path) in wanted])

    def _remove(self, items) -> None:
        for item in items:
            key = item.data(_REF_ROLE).key
            self._forget(key)
            self._loaded.discard(key)
            self._items.pop(key, None)
            self.takeItem(self.row(item))
        self.count_changed.emit(self.count())
        if self.count() == 0:
            self.image_selected.emit(None, None)

    def wait_idle(self, msecs: int = 30000) -> bool:
        return self._lister.waitForDone(msecs) and self._pool.waitForDone(msecs)

    # ------------------------------------------------------------ drag & drop

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt naming
        if event.mimeData().hasUrls() or event.mimeData().hasImage():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        mime = event.mimeData()
        local = [url.toLocalFile() for url in mime.urls() if url.isLocalFile()]
        remote = [url.toString() for url in mime.urls() if not url.isLocalFile()]
        for url in remote:
            self.load_failed.emit(url, "only files on this computer can be opened (not web addresses)")
        if local:
            self.add_paths(local)
        elif mime.hasImage():
            self.add_pixels(qimage_to_pil(mime.imageData()), "Dropped image")
        event.acceptProposedAction()


def _bytes(image: Image.Image) -> int:
    return image.width * image.height * len(image.getbands())
