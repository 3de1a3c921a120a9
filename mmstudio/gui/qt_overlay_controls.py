"""Overlay controls: colormap, opacity, layer and head aggregation, save as PNG."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QGridLayout, QLabel, QPushButton, QSizePolicy, QSlider, QWidget

from mmstudio.attention import AttentionStack
from mmstudio.overlay import STYLES


class OverlayControls(QWidget):
    changed = Signal()  # colormap, layer or head changed: redraw the map
    opacity_changed = Signal(float)
    save_requested = Signal()
    visibility_changed = Signal(bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QGridLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        self.label = QLabel("No attention map")
        self.label.setMinimumWidth(160)
        # A long label ("Grad-CAM of ...") must not widen its columns and stretch the combo boxes below it:
        # it takes the room there is, and its tooltip holds the whole text.
        self.label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.show_box = QPushButton("Overlay")
        self.show_box.setCheckable(True)
        self.show_box.setChecked(True)
        self.show_box.setToolTip("Show or hide the attention heatmap (H)")
        self.colormap = QComboBox()
        self.colormap.addItems(list(STYLES))
        self.colormap.setToolTip("spotlight: dims what the model did not look at, keeping the colours true; "
                                 "or a colormap of the attention values")
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(60)
        self.opacity.setMinimumWidth(100)
        self.opacity.setToolTip("Opacity of the heatmap")
        self.layer = QComboBox()
        self.layer.setToolTip("Which cross-attention layer: the model's default (measured best), the mean of all, "
                              "or one layer")
        self.head = QComboBox()
        self.head.setToolTip("How attention heads are combined: mean, max, or one head")
        for combo in (self.layer, self.head):
            # Their items arrive with the first map, after the first show: size to them then, not to empty.
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        # "default (mean)" whole even when the image view is at its narrowest (the window at 1000 px).
        self.layer.setMinimumContentsLength(len("default (mean)"))
        self.save = QPushButton("Save PNG…")
        self.save.setToolTip("Save the image with this overlay as a PNG (Ctrl+Shift+S)")
        # Three short rows, so the controls fit beside a narrow image view: with all eight in one row the
        # window could not be narrower than 1,106 px, and at 1000x700 it was cut off on the right.
        layout.addWidget(self.show_box, 0, 0)
        layout.addWidget(self.save, 0, 1)
        layout.addWidget(self.label, 0, 2, 1, 3)  # to the right edge: a long label has the room there is
        for row, widgets in enumerate(((QLabel("Colors"), self.colormap, QLabel("Opacity"), self.opacity),
                                       (QLabel("Layer"), self.layer, QLabel("Heads"), self.head)), start=1):
            for column, widget in enumerate(widgets):
                layout.addWidget(widget, row, column)
        layout.setColumnStretch(4, 1)
        self.colormap.currentTextChanged.connect(lambda _: self.changed.emit())
        self.layer.currentIndexChanged.connect(lambda _: self.changed.emit())
        self.head.currentIndexChanged.connect(lambda _: self.changed.emit())
        self.opacity.valueChanged.connect(lambda v: self.opacity_changed.emit(v / 100))
        self.save.clicked.connect(self.save_requested)
        self.show_box.toggled.connect(self.visibility_changed)
        self.set_stack(None)

    def set_stack(self, stack: AttentionStack | None, label: str = "") -> None:
        """Offer the layers and heads this stack has, keeping the user's choice where it still fits."""
        layer_before, head_before = self.layer.currentData(), self.head.currentData()
        for combo in (self.layer, self.head):
            combo.blockSignals(True)
            combo.clear()
        if stack is not None:
            self.layer.addItem(f"default ({stack.default_layer})", "default")
            if len(stack.layers) > 1:
                self.layer.addItem("mean of layers", "mean")
            for layer in stack.layers:
                self.layer.addItem(f"layer {layer}", layer)
            self.head.addItem("mean", "mean")
            self.head.addItem("max", "max")
            for head in range(stack.weights.shape[2]):
                self.head.addItem(f"head {head}", head)
            for combo, before in ((self.layer, layer_before), (self.head, head_before)):
                index = combo.findData(before)
                combo.setCurrentIndex(max(0, index))
        for combo in (self.layer, self.head):
            combo.blockSignals(False)
        self.label.setText(label or ("No attention map" if stack is None else ""))
        self.label.setToolTip(self.label.text())
        for widget in (self.layer, self.head, self.save):
            widget.setEnabled(stack is not None)

    def choice(self) -> tuple:
        return self.layer.currentData() or "default", self.head.currentData() or "mean"
